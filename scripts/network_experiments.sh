#!/usr/bin/env bash
# The expression experiments of the model card (weights/README.md, "Issue 10"): fine-tunes of the shipped light
# weights at 192 px on a seed-0 synthetic cache, validated every 50/100 steps on 256 held-out faces (seed 1000).
#   bash scripts/network_experiments.sh cache      # render the caches (8,000 training faces, 500 held-out)
#   bash scripts/network_experiments.sh probes     # x1-x4: expression-only losses, 150 steps each
#   bash scripts/network_experiments.sh final      # MSMA + plain ablation, 700 steps each, the fixed losses
#   bash scripts/network_experiments.sh evaluate   # the synthetic benchmark of both pairs of weights
# Round 2 (the shipped weights since issue 10 round 2, weights/README.md): 128 px, cross-entropy on the expressions
#   bash scripts/network_experiments.sh bce128     # cache (8,000 + 500 held-out at 128), both runs, trust, evaluation
# Round 3: fine-tunes of the round-2 files on a fresh, larger cache (12,000 faces, seed 4, half of them with skin
# unwrapped from faces_in_the_wild photos; old_photos are the SFM benchmark's textures and stay out of the bank)
#   bash scripts/network_experiments.sh round3     # bank, cache, both runs side by side, trust, evaluation
# Round 4, 5, ...: the same recipe again, fine-tuned from the previous round's files (weights/), on a fresh cache
# (seed 5 for round 4, 6 for round 5, ...; round 6 did not improve on round 5: weights/README.md)
#   bash scripts/network_experiments.sh round4
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
run() {  # NAME STEPS ARGS...
  local name=$1 steps=$2; shift 2
  nice -n 10 $PY -m msma train --config light --synthetic runs/cache/synth192 --val runs/cache/val192 \
    --val-items 256 --steps "$steps" --batch-size 16 --image-size 192 --threads 1 --out "runs/exp/$name" --quiet \
    --log-every 20 --save-every 100 --resume "$@"
}
val_and_real_caches() {  # the 128 px validation faces (seed 1000) and the real-photo batches, when missing
  [ -f runs/cache/val128/shard_00000.npz ] || $PY -m msma.synth --out runs/cache/val128 --n 500 --seed 1000 \
    --image-size 128 --backgrounds ../shared/data/old_photos
  [ -f runs/cache/real_train.npz ] || $PY -m msma.data --source ../shared/data/faces_in_the_wild \
    ../shared/data/old_photos --out runs/cache/real_train.npz
}
equal_budget_pair() {  # TAG RESULT_NAME TRAIN_ARGS...: MSMA light + plain ablation side by side, one thread each
  # (equal budget: same data order, steps and schedule), fine-tuned from weights/, then trust and evaluation
  local tag=$1 name=$2; shift 2
  nice -n 5 $PY -m msma train --config light --init weights/msma_light.safetensors "$@" \
    --out "runs/exp/msma_$tag" --export "runs/exp/msma_$tag/export.safetensors" &
  nice -n 5 $PY -m msma train --config plain-light --init weights/plain_light.safetensors "$@" \
    --out "runs/exp/plain_$tag" --export "runs/exp/plain_$tag/export.safetensors" &
  wait
  $PY scripts/calibrate_network_trust.py "runs/exp/msma_$tag/export.safetensors" "runs/exp/plain_$tag/export.safetensors"
  $PY -m msma evaluate --synthetic 64 --seed 1000 --backgrounds ../shared/data/old_photos --no-fitting --no-refine \
    --reference --threads 2 --weights "runs/exp/msma_$tag/export.safetensors" \
    --ablation-weights "runs/exp/plain_$tag/export.safetensors" --name "$name"
}
banked_cache() {  # OUT N SEED SIZE: N training faces (shards of 500, two processes), half with faces_in_the_wild
  # skin from runs/cache/bank_fitw.npz, when the last shard is missing
  local out=$1 n=$2 seed=$3 size=$4 shards=$(($2 / 500)) half=$(($2 / 1000))
  [ -f "$out/shard_$(printf %05d $((shards - 1))).npz" ] && return 0
  for part in "0-$((half - 1))" "$half-$((shards - 1))"; do
    $PY -m msma.synth --out "$out" --n "$n" --seed "$seed" --image-size "$size" --threads 1 \
      --backgrounds ../shared/data/faces_in_the_wild --texture-bank runs/cache/bank_fitw.npz \
      --bank-probability 0.5 --shards "$part" &
  done
  wait
}
identity_probe() {  # SIZE SYNTHETIC VAL THREADS OUT: identity + vertex losses only, 1,000 steps from weights/
  local ident='{"identity":1,"vertex":0.1,"expression":0,"expression_bce":0,"texture":0,"angles":0,"translation":0,
               "translation_z":0,"lighting":0,"landmark":0}'
  $PY -m msma train --config light --init weights/msma_light.safetensors --steps 1000 --batch-size 16 \
    --image-size "$1" --lr 1e-3 --decay-at 0.7 --head-hidden 256 --mlka-dilation scaled --val "$3" --val-items 256 \
    --val-every 250 --threads "$4" --quiet --log-every 50 --save-every 250 --resume --weights "$ident" \
    --synthetic "$2" --out "$5"
}
ZERO='"identity":0,"angles":0,"translation":0,"translation_z":0,"lighting":0,"texture":0,"vertex":0,"landmark":0'
case "${1:-}" in
  cache)
    $PY -m msma.synth --out runs/cache/synth192 --n 8000 --image-size 192 --backgrounds ../shared/data/faces_in_the_wild
    $PY -m msma.synth --out runs/cache/val192 --n 500 --seed 1000 --image-size 192 --backgrounds ../shared/data/old_photos
    ;;
  probes)
    common=(--init weights/msma_light.safetensors --lr 5e-4 --decay-at --val-every 50)
    run x1_mse 150 "${common[@]}" --weights "{$ZERO,\"expression\":20}"
    run x2_bce 150 "${common[@]}" --weights "{$ZERO,\"expression\":0,\"expression_bce\":1}"
    run x3_bce_spatial 150 "${common[@]}" --head-hidden 256 --weights "{$ZERO,\"expression\":0,\"expression_bce\":1}"
    run x4_mse_spatial 150 "${common[@]}" --head-hidden 256 --weights "{$ZERO,\"expression\":20}"
    ;;
  final)
    fixed=(--lr 2e-4 --decay-at 0.5 0.8 --val-every 100 --expression-activation clamp
           --weights '{"translation_z": 0.1, "expression": 0, "expression_l1": 20}')
    run msma192 700 --init weights/msma_light.safetensors "${fixed[@]}" --export runs/exp/msma192/export.safetensors
    run plain192 700 --config plain-light --init weights/plain_light.safetensors "${fixed[@]}" \
      --export runs/exp/plain192/export.safetensors
    ;;
  evaluate)
    common=(--synthetic 64 --seed 1000 --backgrounds ../shared/data/old_photos --no-fitting --no-refine --reference
            --threads 1)
    $PY -m msma evaluate "${common[@]}" --weights runs/exp/msma192/export.safetensors \
      --ablation-weights runs/exp/plain192/export.safetensors --name network_192_candidate
    $PY -m msma evaluate "${common[@]}" --name network_shipped_64
    $PY benchmarks/net_diagnostics.py --n 32 --out benchmarks/results --name net_diagnostics_shipped
    $PY benchmarks/net_speed.py --size 192 --configs light,light-ablation --threads 1 --seconds 3 \
      --out benchmarks/results --name net_speed_192
    ;;
  bce128)
    [ -f runs/cache/synth128/shard_00015.npz ] || $PY -m msma.synth --out runs/cache/synth128 --n 8000 --image-size 128 \
      --backgrounds ../shared/data/faces_in_the_wild
    val_and_real_caches
    common=(--synthetic runs/cache/synth128 --real runs/cache/real_train.npz --real-every 8 --real-batch 4 --steps 4000
            --batch-size 16 --image-size 128 --lr 5e-4 --decay-at 0.6 0.85 --head-hidden 256 --mlka-dilation scaled
            --val runs/cache/val128 --val-items 256 --val-every 500 --threads 1 --quiet --log-every 50
            --save-every 250 --resume --weights '{"translation_z": 0.1, "expression": 0, "expression_bce": 10}')
    equal_budget_pair bce128 network_bce128_candidate "${common[@]}"
    ;;
  round[3-9])
    # round N >= 4: the same recipe fine-tuned from the round N-1 files (weights/), on a fresh cache of seed N + 1
    n=${1#round}; seed=$((n + 1)); cache=runs/cache/synth128_r$n; tag=r$n
    val_and_real_caches
    [ -f runs/cache/real_fitw.npz ] || $PY -m msma.data --source ../shared/data/faces_in_the_wild \
      --out runs/cache/real_fitw.npz
    [ -f runs/cache/bank_fitw.npz ] || $PY -m msma.synth --build-bank runs/cache/real_fitw.npz --out runs/cache/bank_fitw.npz
    banked_cache "$cache" 12000 "$seed" 128
    common=(--synthetic "$cache" --real runs/cache/real_train.npz --real-every 8 --real-batch 4
            --steps "${STEPS:-3000}" --batch-size 16 --image-size 128 --lr 3e-4 --decay-at 0.6 0.85 --head-hidden 256
            --mlka-dilation scaled --val runs/cache/val128 --val-items 256 --val-every 500 --threads 1 --quiet
            --log-every 50 --save-every 250 --resume
            --weights '{"translation_z": 0.1, "expression": 0, "expression_bce": 10}')
    equal_budget_pair "$tag" "network_${tag}_candidate" "${common[@]}"
    ;;
  identity_probes)
    # Is identity in the crops at all? Identity + vertex losses only, from the round-5 files, 1,000 steps each:
    # on one 500-face shard of the round-6 cache (can the network even memorise identity?) and on the whole cache
    # (does a network that attends to identity alone generalise better than the full recipe's 0.795 MSE?)
    [ -f runs/cache/synth128_r6/shard_00023.npz ] || { echo "run round6 first (its cache)" >&2; exit 2; }
    mkdir -p runs/cache/synth128_r6_one_shard
    ln -sf ../synth128_r6/shard_00000.npz ../synth128_r6/meta_00000.json runs/cache/synth128_r6_one_shard/
    identity_probe 128 runs/cache/synth128_r6_one_shard runs/cache/val128 1 runs/exp/probe_identity_shard &
    identity_probe 128 runs/cache/synth128_r6 runs/cache/val128 1 runs/exp/probe_identity_all &
    wait
    ;;
  identity_probe_192)
    # the "whole cache" identity probe at 192 px: 4,000 faces of seed 7 (round 6's seed) and 256 held-out (seed 1000)
    banked_cache runs/cache/synth192_r6 4000 7 192
    [ -f runs/cache/val192_r6/shard_00000.npz ] || $PY -m msma.synth --out runs/cache/val192_r6 --n 256 --seed 1000 \
      --image-size 192 --backgrounds ../shared/data/old_photos
    identity_probe 192 runs/cache/synth192_r6 runs/cache/val192_r6 2 runs/exp/probe_identity_192
    ;;
  *) echo "usage: $0 cache|probes|final|evaluate|bce128|round3|round4|round5...|identity_probes|identity_probe_192" >&2; exit 2 ;;
esac
