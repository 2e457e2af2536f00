#!/usr/bin/env bash
# The paper configuration (ResNet-50 + fusion + MLKA, 224 px, ICT coefficients) on one large GPU in ~10 minutes of
# training, then its synthetic evaluation and a model-card row. Multi-GPU: set NPROC=N (accelerate, DDP, NCCL).
#
#   bash scripts/train_gpu.sh                     # defaults below; every knob is an environment variable
#   NPROC=8 STEPS=6000 bash scripts/train_gpu.sh  # eight GPUs, per-GPU batch BATCH
#
# Writes: $OUT/checkpoint.pt, $OUT/model.safetensors, weights/$NAME.safetensors (fp16),
#         benchmarks/results/$NAME.{json,md} (evaluation), benchmarks/results/${NAME}_card_row.md (model-card row).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-python}
NAME=${NAME:-msma_paper}
OUT=${OUT:-runs/$NAME}
CACHE=${CACHE:-runs/cache/synth224_features}  # procedural skin with eyebrows and lip colour
N_SYNTH=${N_SYNTH:-24000}        # faces pre-rendered on every CPU core (~0.1-0.15 s per face and core at 224 px)
STEPS=${STEPS:-6000}
BATCH=${BATCH:-64}               # per process
LR=${LR:-5e-4}
MINUTES=${MINUTES:-10}           # training wall-time cap (checkpointed; rerun the script to --resume)
NPROC=${NPROC:-1}
EVAL_N=${EVAL_N:-256}
WEIGHTS=${LOSS_WEIGHTS:-'{"translation_z": 0.1, "expression_bce": 2.0}'}
BACKGROUNDS=${BACKGROUNDS:-../shared/data/faces_in_the_wild}
[ -d "$BACKGROUNDS" ] || BACKGROUNDS=""

$PY - <<'PY' || $PY -m pip install -q timm accelerate
import timm, accelerate  # noqa: F401
PY
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"

# 1. synthetic cache: shards rendered in parallel, one per core (existing shards are kept)
cores=$(nproc)
shards=$(( (N_SYNTH + 499) / 500 ))
bg=()
[ -n "$BACKGROUNDS" ] && bg=(--backgrounds "$BACKGROUNDS")
t0=$(date +%s)
for ((p = 0; p < cores && p < shards; p++)); do
  list=$(seq -s, "$p" "$cores" $((shards - 1)))
  CUDA_VISIBLE_DEVICES="" $PY -m msma.synth --out "$CACHE" --n "$N_SYNTH" --image-size 224 --shards "$list" \
    --threads 1 --facial-features "${bg[@]}" > "$CACHE.render.$p.log" 2>&1 &
done
wait
echo "cache: $(ls "$CACHE"/shard_*.npz | wc -l) shards in $(( $(date +%s) - t0 )) s"

# 2. train (bf16 autocast on CUDA; the same command trains on one CPU without accelerate launch)
launch=($PY -m msma train)
[ "$NPROC" -gt 1 ] && launch=($PY -m accelerate.commands.launch --multi_gpu --num_processes "$NPROC" -m msma.train)
"${launch[@]}" --config paper --synthetic "$CACHE" --steps "$STEPS" --batch-size "$BATCH" --image-size 224 \
  --lr "$LR" --max-minutes "$MINUTES" --out "$OUT" --resume --save-every 500 --log-every 50 --quiet \
  --weights "$WEIGHTS" --export "weights/$NAME.safetensors"

# 3. evaluate the network alone on held-out synthetic faces (fitting rows come from the CPU benchmarks)
$PY -m msma evaluate --synthetic "$EVAL_N" --seed 1000 --weights "weights/$NAME.safetensors" --ablation-weights "" \
  --no-fitting --no-refine --reference --batch 32 --out benchmarks/results --name "$NAME"

# 4. model-card row
$PY scripts/model_card_row.py --weights "weights/$NAME.safetensors" --evaluation "benchmarks/results/$NAME.json" \
  --out "benchmarks/results/${NAME}_card_row.md"
cat "benchmarks/results/${NAME}_card_row.md"
