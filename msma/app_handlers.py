"""The logic behind ``app.py``: plain functions on numpy / library objects, no Gradio import.

``app.py`` only wires these into components. Conventions:

* Every handler takes the loaded-once :class:`AppModels` (read-only after start-up, shared by all users) and the
  user's per-session :class:`Session` (kept in a ``gr.State``); nothing else is shared between sessions.
* Problems the user can fix (no face, not an image, ...) raise :class:`AppError` with a readable message; the UI
  turns it into ``gr.Error``. Non-fatal notes (photo downscaled, GIF first frame) come back in ``warnings`` lists
  that the UI shows with ``gr.Warning``.
* Files for the browser (GLB previews, downloads) are written under a per-session folder in
  :data:`OUTPUT_ROOT`; folders older than :data:`OUTPUT_MAX_AGE_S` are pruned.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import warnings as warnings_module
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
OUTPUT_ROOT = Path(os.environ.get("MSMA_APP_OUTPUT", Path(tempfile.gettempdir()) / "msma_app"))
OUTPUT_MAX_AGE_S = 2 * 3600
APP_MAX_SIDE = 2048  # photos are downscaled to this before detection (keeps big uploads fast)
MAX_FACES = 12  # faces listed in the picker
PREVIEW_TEXTURE_FORMAT = "jpeg"  # GLB previews: 10x smaller than PNG, so the 3D viewer appears sooner
ABLATION_WEIGHTS_ENV = "MSMA_ABLATION_WEIGHTS"
ABLATION_WEIGHTS_NAME = "plain_light.safetensors"

# slider name -> ICT blendshapes it drives (left/right pairs move together)
KEY_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "jawOpen": ("jawOpen",),
    "smile": ("mouthSmile_L", "mouthSmile_R"),
    "eyeBlink": ("eyeBlink_L", "eyeBlink_R"),
    "browInnerUp": ("browInnerUp_L", "browInnerUp_R"),
    "browDown": ("browDown_L", "browDown_R"),
    "mouthPucker": ("mouthPucker",),
    "mouthFunnel": ("mouthFunnel",),
    "cheekPuff": ("cheekPuff_L", "cheekPuff_R"),
}
N_IDENTITY_SLIDERS = 5
IDENTITY_RANGE = 3.0  # slider range of identity modes (model coefficients)

METHOD_LABELS = {
    "network": "MSMA network",
    "network+refine": "MSMA network + refinement",
    "fitting": "fitting (no network)",
    "ablation": "plain ResNet network (ablation)",
}


class AppError(ValueError):
    """A problem with the user's input, with a message fit for the UI."""


# ------------------------------------------------------------------------------------------------ models
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
                    _reconstruct(self, Options(engine.key, True, False), photo, detections[0], 0)
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


# ------------------------------------------------------------------------------------------------ session
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


# ------------------------------------------------------------------------------------------------ input
@dataclass
class Photo:
    image: np.ndarray
    name: str
    warnings: list[str]
    original_size: tuple[int, int] | None = None  # (width, height) before downscaling


UPLOAD_REFUSED = "The {what} upload is not available on the server (it may have expired): please upload it again."


@dataclass(frozen=True)
class Upload:
    """A file a client uploaded through Gradio, accepted by :func:`client_upload` (``path`` resolved, inside the
    upload folder; ``name`` the original file name, for messages only)."""

    path: str
    name: str


def gradio_upload_folder() -> Path:
    """Where Gradio stores uploads and its cache: ``$GRADIO_TEMP_DIR`` or ``<tmp>/gradio`` (the rule of
    ``gradio.utils.get_upload_folder``, repeated here so this module does not import Gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def client_upload(value: Any, roots: Sequence[str | os.PathLike] | None = None, what: str = "photo") -> Upload | None:
    """The one gate for file inputs that come from a client (Gradio payload dict, FileData, or a bare path).

    Accepts only a regular file whose resolved path (symlinks followed) lies inside ``roots`` (default: Gradio's
    upload folder); anything else raises the same :class:`AppError`, whether the path exists or not, so the
    answer tells nothing about the server's files. None stays None (nothing uploaded)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        path, orig = value.get("path"), value.get("orig_name")
    elif isinstance(value, (str, os.PathLike)):
        path, orig = value, None
    else:
        path, orig = getattr(value, "path", None), getattr(value, "orig_name", None)
    refused = AppError(UPLOAD_REFUSED.format(what=what))
    if not isinstance(path, (str, os.PathLike)) or not str(path) or "\x00" in str(path):
        raise refused
    allowed = [Path(r).resolve() for r in (roots if roots is not None else [gradio_upload_folder()])]
    try:
        resolved = Path(os.path.abspath(path)).resolve()
    except (OSError, RuntimeError, ValueError):
        raise refused from None
    if not any(resolved == root or root in resolved.parents for root in allowed):
        raise refused
    if not resolved.is_file():  # only ever asked inside the upload folder
        raise refused
    name = Path(orig).name if isinstance(orig, str) and Path(orig).name else resolved.name
    return Upload(str(resolved), name[:120])


def load_photo(value: Any, max_side: int = APP_MAX_SIDE, what: str = "photo") -> Photo:
    """Load a photo for reconstruction; readable `AppError` when unusable.

    ``value``: an :class:`Upload`, an ndarray, a local path (``str`` / ``Path``: the Python API's caller is trusted),
    or a client payload (dict / FileData), which goes through :func:`client_upload` first."""
    from PIL import Image

    from msma.image_io import ImageLoadError, load_image_with_scale

    if isinstance(value, np.ndarray):
        try:
            loaded = load_image_with_scale(value, max_side=max_side)
        except ImageLoadError as exc:
            raise AppError(f"The {what} cannot be used: {_reason(exc)}") from None
        return Photo(loaded.image, "the photo", _size_warnings(loaded, "the photo", max_side), loaded.original_size)
    if value is not None and not isinstance(value, (Upload, str, os.PathLike)):
        value = client_upload(value, what=what)
    if value is None:
        raise AppError(f"Please upload a {what} first (or click one of the examples).")
    if isinstance(value, Upload):
        path, name = value.path, value.name
    else:
        path, name = str(value), Path(value).name or "the photo"
    warnings: list[str] = []
    try:
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore", Image.DecompressionBombWarning)  # big photos are downscaled
            with Image.open(path) as im:
                fmt = (im.format or "").upper()
                frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            warnings.append(f"{name} is an animated {fmt or 'image'} with {frames} frames: only the first frame is "
                            "used.")
        elif fmt == "GIF":
            warnings.append(f"{name} is a GIF (256 colours at most): a JPEG or PNG gives a better texture.")
    except Exception:  # noqa: BLE001 - load_image below gives the precise reason
        pass
    try:
        loaded = load_image_with_scale(path, max_side=max_side)
    except ImageLoadError as exc:
        raise AppError(f"{name} cannot be used: {_reason(exc)}. Please upload a JPEG, PNG or WebP photo.") from None
    return Photo(loaded.image, name, warnings + _size_warnings(loaded, name, max_side), loaded.original_size)


def _reason(exc: Exception) -> str:
    """The part of an ImageLoadError message after the (temporary, meaningless) file path."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def _size_warnings(loaded, name: str, max_side: int) -> list[str]:
    w, h = loaded.original_size
    if loaded.scale < 1.0:
        nw, nh = loaded.size
        return [f"{name} is {w}×{h} px; it was downscaled to {nw}×{nh} (max side {max_side})."]
    return []


def _detect(models: AppModels, photo: Photo) -> list:
    from msma.landmarks import detect_faces

    detections = detect_faces(photo.image, detector=models.base.detector)
    if not detections:
        h, w = photo.image.shape[:2]
        size = f"{w}×{h} px"
        if photo.original_size and tuple(photo.original_size) != (w, h):
            size = f"{photo.original_size[0]}×{photo.original_size[1]} px, analysed at {w}×{h}"
        raise AppError(f"No face found in {photo.name} ({size}). Try a photo where the face is larger, "
                       "well lit and not too far from frontal.")
    return detections[:MAX_FACES]


def _reconstruct(models: AppModels, options: Options, photo: np.ndarray, detection, index: int):
    from msma.threads import single_torch_thread

    engine = models.engine(options.method)
    rec = engine.get(options.photometric)
    with single_torch_thread():  # requests run in parallel worker threads: see msma/threads.py
        return rec.reconstruct_face(photo, detection, index=index, texture=options.texture, method=engine.method)


# ------------------------------------------------------------------------------------------------ reconstruct tab
@dataclass
class Preview:
    """Fast first answer: the GLB for the 3D viewer."""

    session: Session
    glb: str
    status: str
    warnings: list[str]


def reconstruct(models: AppModels, value: Any, method: str | None = None, texture: bool = True,
                photometric: bool = True, face_index: int | None = None, session: Session | None = None) -> Preview:
    """Photo -> the selected face (default 0 = largest) reconstructed and its textured GLB written."""
    start = time.perf_counter()
    options = Options(method or models.default, bool(texture), bool(photometric))
    models.engine(options.method)  # validate before the heavy work
    photo = load_photo(value, max_side=models.max_side)
    detections = _detect(models, photo)
    index = 0 if face_index is None else int(face_index)
    warnings = list(photo.warnings)
    if not 0 <= index < len(detections):
        warnings.append(f"there is no face #{index + 1}; showing the largest face instead")
        index = 0
    workdir = session.workdir if session is not None and Path(session.workdir).is_dir() else new_workdir()
    session = Session(photo.image, photo.name, detections, options, workdir, selected=index)
    return _preview(models, session, warnings, start)


def select_face(models: AppModels, session: Session | None, index: int | None) -> Preview:
    """Switch to another detected face of the same photo (reconstructed on first use, then cached)."""
    if session is None:
        raise AppError("Reconstruct a photo first.")
    start = time.perf_counter()
    index = int(index or 0)
    if not 0 <= index < len(session.detections):
        raise AppError(f"There is no face #{index + 1}: the photo has {len(session.detections)} detected face(s).")
    session.selected = index
    return _preview(models, session, [], start)


def file_stem(name: str | None, fallback: str = "face") -> str:
    """A photo's name as a safe file-name stem for downloads ('My photo (2).jpg' -> 'My_photo_2')."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").stem).strip("._-")[:60]
    return stem or fallback


def download_stem(session: Session) -> str:
    """``<photo>_face<k>``: every file of one face, the 3D viewer's GLB included, is named after the photo."""
    return f"{file_stem(session.name)}_face{session.selected + 1}"


def _preview(models: AppModels, session: Session, warnings: list[str], start: float) -> Preview:
    from msma.export import export_glb

    if session.selected not in session.faces:
        det = session.detections[session.selected]
        session.faces[session.selected] = _reconstruct(models, session.options, session.photo, det, session.selected)
    face = session.face
    path = export_glb(face.mesh(), session.new_dir("preview") / f"{download_stem(session)}.glb",
                      texture_format=PREVIEW_TEXTURE_FORMAT)
    n = len(session.detections)
    label = models.engine(session.options.method).label
    status = (f"{session.name}: face {session.selected + 1} of {n} ({label}, detector {face.detector}) "
              f"in {time.perf_counter() - start:.1f} s")
    return Preview(session, str(path), status, warnings)


@dataclass
class Details:
    overlay: np.ndarray
    shape: np.ndarray
    blendshape_plot: Any  # plotly Figure
    pose: dict[str, float]
    pose_markdown: str
    downloads: list[str]
    gallery: list[tuple[np.ndarray, str]]
    expression_values: list[float]  # one per KEY_EXPRESSIONS entry
    identity_values: list[float]  # N_IDENTITY_SLIDERS values


def details(models: AppModels, session: Session | None, wireframe: bool = False) -> Details | None:
    """Everything after the 3D preview: overlay, shape render, blendshape chart, pose, downloads, face picker."""
    from msma.threads import single_torch_thread

    if session is None or session.selected not in session.faces:
        return None
    with single_torch_thread():
        return _details(session, wireframe)


def _details(session: Session, wireframe: bool) -> Details:
    from msma.api import ReconstructionResult

    face = session.face
    overlay = ReconstructionResult(session.photo, [face], {}).overlay(wireframe=bool(wireframe))
    out = session.new_dir("downloads")
    files = face.export(out, stem=download_stem(session), formats=("obj.zip", "glb", "ply", "json"))
    downloads = [str(files[k]) for k in ("obj.zip", "glb", "ply", "json") if k in files]
    pose = {k: round(v, 2) for k, v in face.pose.as_dict().items()}
    return Details(
        overlay=overlay,
        shape=shape_render(face, session.photo.shape[:2]),
        blendshape_plot=blendshape_figure(face.blendshapes),
        pose=pose,
        pose_markdown=pose_markdown(face),
        downloads=downloads,
        gallery=face_gallery(session),
        expression_values=slider_values(session)[: len(KEY_EXPRESSIONS)],
        identity_values=slider_values(session)[len(KEY_EXPRESSIONS):],
    )


def slider_values(session: Session | None) -> list[float]:
    """Expression then identity slider values of the current face (the reconstruction, before any editing)."""
    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first; the sliders edit the reconstructed face.")
    face = session.face
    identity = face.coefficients.identity[0, :N_IDENTITY_SLIDERS].tolist()
    return expression_slider_values(face.blendshapes) + [round(float(v), 3) for v in identity]


def expression_slider_values(blendshapes: Mapping[str, float]) -> list[float]:
    return [round(float(np.mean([blendshapes.get(n, 0.0) for n in names])), 3) for names in KEY_EXPRESSIONS.values()]


def repose(models: AppModels, session: Session | None, expression_values: Sequence[float],
           identity_values: Sequence[float]) -> str:
    """New GLB of the current face with the slider values (no re-fitting; texture / colours kept)."""
    from msma.export import MeshData, export_glb
    from msma.threads import single_torch_thread

    if session is None or session.selected not in session.faces:
        raise AppError("Reconstruct a photo first; the sliders edit the reconstructed face.")
    face = session.face
    expression = {}
    for value, names in zip(expression_values, KEY_EXPRESSIONS.values()):
        for name in names:
            if name in face.blendshapes:
                expression[name] = float(np.clip(value, 0.0, 1.0))
    identity = {i: float(v) for i, v in enumerate(identity_values) if i < face.coefficients.identity.shape[1]}
    with single_torch_thread():
        vertices = models.engine(session.options.method).reconstructor.repose(face, expression=expression,
                                                                               identity=identity)
    mesh = face.mesh()
    mesh = MeshData(vertices=vertices, faces=mesh.faces, uv=mesh.uv, face_uv_index=mesh.face_uv_index,
                    texture=mesh.texture, vertex_colors=mesh.vertex_colors, unit_m=mesh.unit_m)
    return str(export_glb(mesh, session.new_dir("repose") / f"{download_stem(session)}_edited.glb",
                          texture_format=PREVIEW_TEXTURE_FORMAT))


def face_gallery(session: Session, size: int = 128) -> list[tuple[np.ndarray, str]]:
    """One square crop per detected face (largest first) with a caption, for the face picker."""
    import cv2

    items = []
    h, w = session.photo.shape[:2]
    for i, det in enumerate(session.detections):
        x0, y0, x1, y1 = np.asarray(det.box, dtype=np.float64)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.7
        a, b = int(max(0, cx - half)), int(max(0, cy - half))
        c, d = int(min(w, cx + half)), int(min(h, cy + half))
        crop = session.photo[b:max(d, b + 1), a:max(c, a + 1)]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        tag = " (largest)" if i == 0 else ""
        done = " ✓" if i in session.faces else ""
        items.append((crop, f"face {i + 1}{tag}{done}"))
    return items


def pose_markdown(face) -> str:
    p = face.pose
    return (f"| pitch | yaw | roll |\n|---|---|---|\n| {p.pitch:+.1f}° | {p.yaw:+.1f}° | {p.roll:+.1f}° |\n\n"
            f"landmark error {face.landmark_error_px:.1f} px · method `{face.method}` · detector `{face.detector}`")


def blendshape_figure(blendshapes: Mapping[str, float], title: str | None = None):
    """Plotly bar chart of the expression weights (ICT's 53 ARKit-named blendshapes, 0..1)."""
    import plotly.graph_objects as go

    names = list(blendshapes)
    values = [float(blendshapes[n]) for n in names]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color="#4c78a8",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"{len(names)} ARKit expression weights", yaxis={"range": [0, 1],
                      "title": "weight"}, xaxis={"tickangle": -60, "tickfont": {"size": 9}},
                      margin={"l": 40, "r": 10, "t": 40, "b": 110}, height=380)
    return fig


def shape_render(face, shape: tuple[int, int], max_side: int = 512, margin: float = 0.35,
                 background: Sequence[int] = (238, 238, 238)) -> np.ndarray:
    """Grey Lambert-shaded render of the mesh alone, in the photo frame, cropped around the face."""
    import torch

    from msma.face_model import euler_to_matrix, vertex_normals
    from msma.render import Renderer

    height, width = shape
    x0, y0, x1, y1 = np.asarray(face.box, dtype=np.float64)
    pts = face.projected[:, :2]
    x0, y0 = min(x0, pts[:, 0].min()), min(y0, pts[:, 1].min())
    x1, y1 = max(x1, pts[:, 0].max()), max(y1, pts[:, 1].max())
    pad = margin * max(x1 - x0, y1 - y0) / 2
    left, top = max(0.0, x0 - pad), max(0.0, y0 - pad)
    right, bottom = min(float(width), x1 + pad), min(float(height), y1 + pad)
    if right - left < 8 or bottom - top < 8:
        left, top, right, bottom = 0.0, 0.0, float(width), float(height)
    scale = min(1.0, max_side / max(right - left, bottom - top))
    w, h = max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))
    screen = torch.as_tensor(face.projected, dtype=torch.float32).clone()
    screen[:, 0] = (screen[:, 0] - left) * scale
    screen[:, 1] = (screen[:, 1] - top) * scale
    verts = torch.as_tensor(face.vertices, dtype=torch.float32)[None]
    tris = torch.as_tensor(face.faces, dtype=torch.long)
    normals = vertex_normals(verts, tris)[0] @ euler_to_matrix(face.coefficients.angles.float())[0].T
    light = torch.tensor([0.3, 0.4, 1.0])
    light = light / light.norm()
    lambert = (normals @ light).clamp(0, 1)[:, None]
    shade = (0.18 + 0.82 * lambert).expand(-1, 3) * torch.tensor([0.82, 0.82, 0.86])
    out = Renderer((h, w)).render_colors(screen[None], tris, shade[None])
    rgb = out.image[0].clamp(0, 1).numpy() * 255
    mask = out.mask[0].numpy()[..., None].astype(np.float32)
    bg = np.broadcast_to(np.asarray(background, np.float32), rgb.shape)
    return np.clip(rgb * mask + bg * (1 - mask) + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ compare tab
@dataclass
class MethodComparison:
    glb_a: str
    glb_b: str
    overlay_a: np.ndarray
    overlay_b: np.ndarray
    summary: str
    warnings: list[str]


def compare_methods(models: AppModels, value: Any, method_a: str, method_b: str, texture: bool = True,
                    photometric: bool = True, session_dir: str | None = None) -> MethodComparison:
    """The same photo's largest face reconstructed by two methods."""
    from msma.api import ReconstructionResult
    from msma.compare import identity_distance
    from msma.export import export_glb

    for key in (method_a, method_b):
        models.engine(key)
    photo = load_photo(value, max_side=models.max_side)
    detection = _detect(models, photo)[0]
    out = Path(session_dir or new_workdir()) / f"compare_{uuid.uuid4().hex[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    faces, rows = [], []
    for tag, key in (("a", method_a), ("b", method_b)):
        start = time.perf_counter()
        face = _reconstruct(models, Options(key, texture, photometric), photo.image, detection, 0)
        seconds = time.perf_counter() - start
        faces.append(face)
        p = face.pose
        rows.append(f"| {tag.upper()} | {models.engine(key).label} | {seconds:.1f} s | {face.landmark_error_px:.1f} px "
                    f"| {p.pitch:+.1f}° / {p.yaw:+.1f}° / {p.roll:+.1f}° |")
    glbs = [str(export_glb(f.mesh(), out / f"{file_stem(photo.name)}_{tag}_{file_stem(key)}.glb",
                           texture_format=PREVIEW_TEXTURE_FORMAT))
            for tag, f, key in zip("ab", faces, (method_a, method_b))]
    overlays = [ReconstructionResult(photo.image, [f], {}).overlay() for f in faces]
    dist = identity_distance(faces[0].neutral_vertices, faces[1].neutral_vertices,
                             region_vertex_indices=models.model.face_vertices.cpu().numpy())
    summary = ("| | method | time | landmark error | pitch / yaw / roll |\n|---|---|---|---|---|\n" + "\n".join(rows)
               + f"\n\nIdentity-shape difference A vs B (face region, rigidly aligned): mean {dist.mean_mm:.2f} mm, "
                 f"max {dist.max_mm:.2f} mm.")
    return MethodComparison(glbs[0], glbs[1], overlays[0], overlays[1], summary, photo.warnings)


@dataclass
class IdentityComparison:
    glb_a: str
    glb_b: str
    heatmap: Any  # plotly Figure
    distance: dict[str, float]
    summary: str
    warnings: list[str]


def _upload_sha256(value: Any) -> str | None:
    """SHA-256 of an already accepted upload / local path (None for arrays and anything else)."""
    path = value.path if isinstance(value, Upload) else value if isinstance(value, (str, os.PathLike)) else None
    if path is None:
        return None
    from msma.identity_calibration import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def compare_identities(models: AppModels, value_a: Any, value_b: Any, method: str | None = None,
                       session_dir: str | None = None) -> IdentityComparison:
    """Two photos' largest faces: identity (neutral) shapes, per-vertex distance heatmap and summary distance."""
    from msma.compare import distance_heatmap_figure, identity_distance
    from msma.export import MeshData, export_glb

    options = Options(method or models.default, texture=False, photometric=True)
    models.engine(options.method)
    photos = [load_photo(v, max_side=models.max_side, what=f"photo {t}") for v, t in ((value_a, "A"), (value_b, "B"))]
    faces = [_reconstruct(models, options, p.image, _detect(models, p)[0], 0) for p in photos]
    region = models.model.face_vertices.cpu().numpy()
    dist = identity_distance(faces[0].neutral_vertices, faces[1].neutral_vertices, region_vertex_indices=region)
    out = Path(session_dir or new_workdir()) / f"identity_{uuid.uuid4().hex[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    grey = np.full((len(faces[0].neutral_vertices), 3), 0.75)
    glbs = []
    for tag, face, photo in zip("ab", faces, photos):
        mesh = MeshData(vertices=face.neutral_vertices, faces=face.faces, vertex_colors=grey,
                        unit_m=face.mesh().unit_m)
        glbs.append(str(export_glb(mesh, out / f"{file_stem(photo.name)}_{tag}_identity.glb")))
    # heatmap on A's face region only (the back of the head is not observed)
    keep = np.zeros(len(faces[0].neutral_vertices), bool)
    keep[region] = True
    tri = faces[0].faces[keep[faces[0].faces].all(axis=1)]
    used = np.unique(tri)
    remap = np.full(len(keep), -1)
    remap[used] = np.arange(len(used))
    fig = distance_heatmap_figure(faces[0].neutral_vertices[used], remap[tri], dist.per_vertex_mm[used],
                                  title="identity distance B → A (mm)")
    from msma.identity_calibration import fingerprint, identity_verdict

    engine = models.engine(options.method)
    weights = getattr(engine.reconstructor, "weights_path", None)
    verdict = "\n\n" + identity_verdict(dist.mean_mm, engine.method, fingerprint(engine.method, weights),
                                         (_upload_sha256(value_a), _upload_sha256(value_b)))
    summary = (f"**Mean identity distance: {dist.mean_mm:.2f} mm** (median {dist.median_mm:.2f}, "
               f"RMS {dist.rms_mm:.2f}, max {dist.max_mm:.2f} mm over {len(region)} face vertices, "
               f"after rigid alignment).{verdict}")
    return IdentityComparison(glbs[0], glbs[1], fig, dist.summary(), summary, photos[0].warnings + photos[1].warnings)


def example_photos() -> list[str]:
    return [str(p) for p in sorted(EXAMPLES_DIR.glob("*.jpg"))]
