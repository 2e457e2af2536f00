"""Robust image loading: any path / bytes / PIL image / ndarray -> uint8 RGB (H, W, 3).

Handles EXIF orientation, grayscale / alpha / palette / 16-bit modes, animated images (first frame), tiny images
(refused), huge images (decoded at reduced size through the JPEG draft path and downscaled to ``max_side``) and
corrupt or non-image files (``ImageLoadError`` naming the source).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "LoadedImage", "MIN_SIDE", "PHOTO_EXTENSIONS", "load_image", "load_image_with_scale"]

MIN_SIDE = 32
# Refuse to decode more than this many pixels (after any JPEG draft reduction): ~1.2 GB of RGB.
MAX_DECODED_PIXELS = 400_000_000

# Raster photo formats read here (Pillow decoders that need no outside program): the app takes these uploads and the
# annotation importer picks up files with these extensions.
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "PPM", "TGA", "JPEG2000", "AVIF", "QOI",
                 "PCX", "SGI", "SUN", "PSD")


def _photo_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                     if fmt in PHOTO_FORMATS and fmt in Image.OPEN)


PHOTO_EXTENSIONS = _photo_extensions()  # ".jpg", ".png", ".ppm", ".pgm", ".tif", ...

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray | IO[bytes]


class ImageLoadError(ValueError):
    """The source could not be turned into an RGB image (missing, corrupt, not an image, too small, too large)."""


@dataclass
class LoadedImage:
    image: np.ndarray  # (H, W, 3) uint8 RGB, after EXIF rotation and downscaling
    original_size: tuple[int, int]  # (width, height) of the EXIF-rotated source before downscaling
    name: str  # human-readable description of the source, used in error messages

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    @property
    def scale(self) -> float:
        """Loaded width / original width (1.0 when not downscaled)."""
        return self.image.shape[1] / self.original_size[0]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) pixel coordinates of ``image`` back to the original resolution (pixel centres at integers)."""
        sx = self.original_size[0] / self.image.shape[1]
        sy = self.original_size[1] / self.image.shape[0]
        pts = np.asarray(points, dtype=np.float64)
        return np.stack([(pts[..., 0] + 0.5) * sx - 0.5, (pts[..., 1] + 0.5) * sy - 0.5], axis=-1)

    def from_original(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_original`."""
        sx = self.image.shape[1] / self.original_size[0]
        sy = self.image.shape[0] / self.original_size[1]
        pts = np.asarray(points, dtype=np.float64)
        return np.stack([(pts[..., 0] + 0.5) * sx - 0.5, (pts[..., 1] + 0.5) * sy - 0.5], axis=-1)


def load_image(source: ImageSource, max_side: int | None = 4096) -> np.ndarray:
    """Load ``source`` as a uint8 RGB array (H, W, 3); images larger than ``max_side`` are downscaled (aspect kept)."""
    return load_image_with_scale(source, max_side).image


def load_image_with_scale(source: ImageSource, max_side: int | None = 4096) -> LoadedImage:
    """Like :func:`load_image` but also returns the original size so points can be mapped back."""
    if max_side is not None and max_side < MIN_SIDE:
        raise ValueError(f"max_side must be >= {MIN_SIDE}, got {max_side}")
    if isinstance(source, np.ndarray):
        return _from_array(source, max_side)
    if isinstance(source, Image.Image):
        return _from_pil(source, max_side, "<PIL image>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"<{len(data)} bytes>"
        if not data:
            raise ImageLoadError(f"cannot load image from {name}: empty data")
        return _open_and_load(io.BytesIO(data), name, max_side)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise ImageLoadError(f"cannot load image {name!r}: file not found")
        if not path.is_file():
            raise ImageLoadError(f"cannot load image {name!r}: not a regular file")
        with open(path, "rb") as fh:
            return _open_and_load(fh, name, max_side)
    if hasattr(source, "read"):
        name = f"<{getattr(source, 'name', type(source).__name__)}>"
        return _open_and_load(source, name, max_side)
    raise TypeError(f"unsupported image source type {type(source).__name__}")


def _open_and_load(fh: IO[bytes], name: str, max_side: int | None) -> LoadedImage:
    try:
        with warnings.catch_warnings():
            # Large images are expected here: they are decoded at reduced size below, so only the hard limit
            # (DecompressionBombError) and our own MAX_DECODED_PIXELS apply.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as im:
                return _from_pil(im, max_side, name)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"cannot load image {name!r}: refusing to decode a suspiciously large image ({exc}); "
            "downscale it before loading"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"cannot load image {name!r}: not a recognised image file") from exc
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageLoadError(f"cannot load image {name!r}: corrupt or truncated image data ({exc})") from exc


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    orientation = im.getexif().get(0x0112, 1)
    w, h = im.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _target_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _check_min_side(size: tuple[int, int], name: str, what: str = "image") -> None:
    if min(size) < MIN_SIDE:
        raise ImageLoadError(
            f"cannot use image {name!r}: {what} is {size[0]}x{size[1]} px; at least {MIN_SIDE} px per side is needed"
        )


def _from_pil(im: Image.Image, max_side: int | None, name: str) -> LoadedImage:
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    original = _oriented_size(im)
    _check_min_side(original, name)
    target = _target_size(original, max_side)
    if target != original and im.format == "JPEG":
        # The JPEG decoder can scale by 1/2, 1/4 or 1/8 while decoding (DCT scaling): a 12000 px photo is never
        # materialised at full size. draft() keeps the decoded size >= the requested one.
        req = target if original == im.size else (target[1], target[0])
        im.draft(im.mode if im.mode in ("RGB", "L") else "RGB", req)
    if im.size[0] * im.size[1] > MAX_DECODED_PIXELS:
        raise ImageLoadError(
            f"cannot load image {name!r}: {im.size[0]}x{im.size[1]} px is too large to decode "
            f"(limit {MAX_DECODED_PIXELS} pixels); downscale it first"
        )
    im.load()
    im = ImageOps.exif_transpose(im)
    rgb = _to_rgb_array(im)
    if (rgb.shape[1], rgb.shape[0]) != target:
        rgb = _resize(rgb, target)
    _check_min_side((rgb.shape[1], rgb.shape[0]), name, what="downscaled image")
    return LoadedImage(image=rgb, original_size=original, name=name)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _gray_to_rgb(_normalise_high_depth(np.asarray(im)))
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        arr = np.asarray(im, dtype=np.float32)
        alpha = arr[..., 3:4] / 255.0
        # Composite on white: transparent cut-outs of faces look natural on white, and black would darken edges.
        out = arr[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _normalise_high_depth(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    hi = float(arr.max(initial=0.0))
    # 16-bit PNG/TIFF -> full 0..65535 range; float ('F') images -> 0..1; anything else already 0..255.
    if hi <= 1.0:
        arr = arr * 255.0
    elif hi > 255.0:
        arr = arr * (255.0 / 65535.0) if hi <= 65535.0 else arr * (255.0 / hi)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interp)


def _from_array(arr: np.ndarray, max_side: int | None) -> LoadedImage:
    name = f"<ndarray {arr.dtype} {arr.shape}>"
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(f"cannot use image {name}: expected (H, W), (H, W, 3) or (H, W, 4)")
    if arr.dtype == np.uint8:
        img = arr
    elif arr.dtype == np.bool_:
        img = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageLoadError(f"cannot use image {name}: contains NaN or infinite values")
        scale = 255.0 if float(arr.max(initial=0.0)) <= 1.0 else 1.0
        img = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
    elif arr.dtype == np.uint16:
        img = (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        img = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError(f"cannot use image {name}: unsupported dtype")
    if img.ndim == 2:
        img = _gray_to_rgb(img)
    elif img.shape[2] == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255.0
        img = np.clip(img[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    original = (img.shape[1], img.shape[0])
    _check_min_side(original, name)
    target = _target_size(original, max_side)
    img = _resize(img, target) if target != original else np.ascontiguousarray(img).copy()
    _check_min_side((img.shape[1], img.shape[0]), name, what="downscaled image")
    return LoadedImage(image=img, original_size=original, name=name)
