"""The app's inputs: the one gate for client uploads, photo loading with readable errors, face detection.

Problems the user can fix raise :class:`msma.app.state.AppError`; non-fatal notes (photo downscaled, GIF first
frame) come back in ``warnings`` lists that the UI shows with ``gr.Warning``.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings as warnings_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msma.app.state import APP_MAX_SIDE, EXAMPLES_DIR, MAX_FACES, AppError, AppModels


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


def detect(models: AppModels, photo: Photo) -> list:
    """The photo's faces, largest first (at most :data:`MAX_FACES`); a readable error when there is none."""
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


def file_stem(name: str | None, fallback: str = "face") -> str:
    """A photo's name as a safe file-name stem for downloads ('My photo (2).jpg' -> 'My_photo_2')."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").stem).strip("._-")[:60]
    return stem or fallback


def example_photos() -> list[str]:
    """The bundled example photos (``examples/*.jpg``), for the UI's example buttons."""
    return [str(p) for p in sorted(EXAMPLES_DIR.glob("*.jpg"))]
