"""What the app holds: the models loaded once at start-up, the GPU switch, each visitor's session and its files.

* Every handler takes the loaded-once :class:`AppModels` (read-only after start-up, shared by all users) and the
  user's per-session :class:`Session` (kept in a ``gr.State``); nothing else is shared between sessions.
* Problems the user can fix (no face, not an image, ...) raise :class:`AppError` with a readable message; the UI
  turns it into ``gr.Error``.
* Files for the browser (GLB previews, downloads) are written under a per-session folder in
  :data:`OUTPUT_ROOT`; folders older than :data:`OUTPUT_MAX_AGE_S` are pruned.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"
OUTPUT_ROOT = Path(os.environ.get("MSMA_APP_OUTPUT", Path(tempfile.gettempdir()) / "msma_app"))
OUTPUT_MAX_AGE_S = 2 * 3600
APP_MAX_SIDE = 2048  # photos are downscaled to this before detection (keeps big uploads fast)
MAX_FACES = 12  # faces listed in the picker
PREVIEW_TEXTURE_FORMAT = "jpeg"  # GLB previews: 10x smaller than PNG, so the 3D viewer appears sooner
ABLATION_WEIGHTS_ENV = "MSMA_ABLATION_WEIGHTS"
ABLATION_WEIGHTS_NAME = "plain_light.safetensors"

METHOD_LABELS = {
    "network": "MSMA network",
    "network+refine": "MSMA network + refinement",
    "fitting": "fitting (no network)",
    "ablation": "plain ResNet network (ablation)",
}


class AppError(ValueError):
    """A problem with the user's input, with a message fit for the UI."""


@dataclass
class Engine:
    """One choice of the method menu: a loaded reconstructor and the method it runs."""

    key: str
    label: str
    reconstructor: Any  # msma.api.Reconstructor
    method: str
    fast: Any = None  # the same reconstructor without photometric refinement (shares model and network)

    def get(self, photometric: bool = True):
        return self.reconstructor if photometric or self.fast is None else self.fast


class AppModels:
    """Everything loaded once at start-up; read-only afterwards, shared by all sessions."""

    def __init__(self, engines: Mapping[str, Engine], default: str, max_side: int = APP_MAX_SIDE,
                 gpu: str = "none") -> None:
        if not engines:
            raise ValueError("no reconstruction engine")
        self.engines = dict(engines)
        self.default = default
        self.max_side = int(max_side)
        self.gpu = gpu

    @classmethod
    def load(cls, weights: str | os.PathLike | None = None, ablation_weights: str | os.PathLike | None = None,
             detector: str = "auto", device: str = "auto", texture_size: int = 512, max_side: int = APP_MAX_SIDE,
             gpu: str = "none") -> AppModels:
        """Load the face model once, the network weights when present (``msma.api.resolve_weights_path``), and the
        optional plain-ResNet ablation weights (``ablation_weights``, ``$MSMA_ABLATION_WEIGHTS`` or
        ``weights/resnet_plain.safetensors``)."""
        import torch

        from msma.api import REPO_WEIGHTS_DIR, Reconstructor

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        base = Reconstructor(method="auto", weights=weights, detector=detector, device=device,
                             texture_size=texture_size, max_side=max_side)
        _ = base.unwrapper  # build the UV unwrapper now (seconds), shared by the copies below
        engines: dict[str, Engine] = {}
        methods = ("network", "network+refine", "fitting") if base.network is not None else ("fitting",)
        for method in methods:
            engines[method] = Engine(method, METHOD_LABELS[method], base, method, fast=_without_photometric(base))
        ablation = ablation_weights or os.environ.get(ABLATION_WEIGHTS_ENV)
        if ablation is None and (REPO_WEIGHTS_DIR / ABLATION_WEIGHTS_NAME).is_file():
            ablation = REPO_WEIGHTS_DIR / ABLATION_WEIGHTS_NAME
        if ablation is not None:
            plain = Reconstructor(method="network", weights=ablation, face_model=base.model, detector=detector,
                                  device=device, texture_size=texture_size, max_side=max_side)
            plain._unwrapper = base.unwrapper  # same model, same UV layout
            engines["ablation"] = Engine("ablation", METHOD_LABELS["ablation"], plain, "network", fast=plain)
        default = base.method if base.method in engines else "fitting"  # msma.api.DEFAULT_METHOD via "auto"
        return cls(engines, default, max_side=max_side, gpu=gpu)

    @property
    def base(self):
        return self.engines[self.default].reconstructor

    @property
    def model(self):
        return self.base.model

    def choices(self) -> list[tuple[str, str]]:
        """(label, key) pairs for a radio / dropdown."""
        return [(e.label, e.key) for e in self.engines.values()]

    def engine(self, key: str | None) -> Engine:
        if key is None:
            return self.engines[self.default]
        if key not in self.engines:
            available = ", ".join(self.engines)
            hint = " (network weights are not installed)" if key.startswith("network") or key == "ablation" else ""
            raise AppError(f"method {key!r} is not available{hint}; choose one of: {available}")
        return self.engines[key]

    def describe(self) -> dict[str, str]:
        info = dict(self.base.describe())
        info["methods"] = ", ".join(e.label for e in self.engines.values())
        if "ablation" in self.engines:
            info["ablation_weights"] = str(self.engines["ablation"].reconstructor.weights_path)
        info["gpu"] = self.gpu
        info["max_side"] = str(self.max_side)
        return info

    def warmup(self, image: str | os.PathLike | np.ndarray | None = None) -> float:
        """Run every engine once (first calls pay one-off costs); returns seconds. Failures are only logged."""
        start = time.perf_counter()
        try:
            from msma.image_io import load_image
            from msma.landmarks import detect_faces

            if image is None:
                found = sorted(EXAMPLES_DIR.glob("*.jpg"))
                if not found:
                    return 0.0
                image = found[0]
            photo = load_image(image, max_side=self.max_side)
            detections = detect_faces(photo, detector=self.base.detector)
            if detections:
                for engine in self.engines.values():
                    run_engine(self, Options(engine.key, True, False), photo, detections[0], 0)
        except Exception as exc:  # noqa: BLE001 - a failed warm-up must not stop the app
            log.warning("warm-up failed: %s", exc)
        return time.perf_counter() - start


def _without_photometric(reconstructor):
    fast = copy.copy(reconstructor)  # shares model, network, contour tracker and unwrapper
    fast.photometric = False
    return fast


def gpu_decorator(duration: int = 60) -> tuple[Callable[[Callable], Callable], str]:
    """``spaces.GPU(duration=...)`` when the ``spaces`` package is importable and ZeroGPU is on
    (``SPACES_ZERO_GPU``), else a no-op decorator. Returns (decorator, description)."""
    if os.environ.get("SPACES_ZERO_GPU", "").lower() not in ("1", "true", "yes"):
        return (lambda fn: fn), "none (plain CPU/GPU process)"
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return (lambda fn: fn), "none (SPACES_ZERO_GPU set but the spaces package is missing)"
    return spaces.GPU(duration=duration), f"ZeroGPU (spaces.GPU, duration {duration} s)"


@dataclass
class Options:
    method: str | None = None
    texture: bool = True
    photometric: bool = True

    def key(self) -> tuple:
        return (self.method, bool(self.texture), bool(self.photometric))


@dataclass
class Session:
    """Per-user state of the Reconstruct tab (lives in a gr.State; never shared)."""

    photo: np.ndarray
    name: str
    detections: list
    options: Options
    workdir: str
    faces: dict[int, Any] = field(default_factory=dict)  # face index -> FaceReconstruction
    selected: int = 0
    counter: int = 0

    @property
    def face(self):
        return self.faces[self.selected]

    def new_dir(self, tag: str) -> Path:
        """A fresh, never reused folder for one batch of files: a file already handed to the browser is never
        overwritten (requests of one browser session can overlap and share the workdir)."""
        self.counter += 1
        path = Path(self.workdir) / f"{self.counter:03d}_{tag}_{uuid.uuid4().hex[:10]}"
        path.mkdir(parents=True, exist_ok=False)
        return path


def new_workdir() -> str:
    prune_outputs()
    path = OUTPUT_ROOT / uuid.uuid4().hex
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


_prune_lock = threading.Lock()


def prune_outputs(root: Path | None = None, max_age_s: float = OUTPUT_MAX_AGE_S) -> int:
    """Remove session folders older than ``max_age_s``; returns how many were removed."""
    root = Path(root or OUTPUT_ROOT)
    removed = 0
    if not root.is_dir() or not _prune_lock.acquire(blocking=False):
        return 0
    try:
        now = time.time()
        for child in root.iterdir():
            try:
                if child.is_dir() and now - child.stat().st_mtime > max_age_s:
                    shutil.rmtree(child, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
    finally:
        _prune_lock.release()
    return removed


def run_engine(models: AppModels, options: Options, photo: np.ndarray, detection, index: int):
    """One face of ``photo`` reconstructed by the engine ``options.method`` picks (with or without photometric
    refinement)."""
    from msma.threads import single_torch_thread

    engine = models.engine(options.method)
    rec = engine.get(options.photometric)
    with single_torch_thread():  # requests run in parallel worker threads: see msma/threads.py
        return rec.reconstruct_face(photo, detection, index=index, texture=options.texture, method=engine.method)

