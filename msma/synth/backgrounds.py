"""Backgrounds of the synthetic faces: real photos (a folder or a list) cropped at random, or gradients + noise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from msma.image_io import PHOTO_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS and p.is_file())


def load_backgrounds(backgrounds, max_side: int = 512) -> list[np.ndarray]:
    """Folder / list of paths / list of uint8 arrays -> uint8 (H, W, 3) arrays (downscaled, unreadable skipped)."""
    if backgrounds is None:
        return []
    if isinstance(backgrounds, (str, os.PathLike)):
        items: Sequence = list_images(backgrounds)
    else:
        items = list(backgrounds)
    out = []
    for item in items:
        if isinstance(item, np.ndarray):
            img = item
        else:
            try:
                from PIL import Image

                with Image.open(item) as im:
                    img = np.asarray(im.convert("RGB"))
            except Exception:
                continue
        if img.ndim != 3 or min(img.shape[:2]) < 32:
            continue
        scale = max_side / max(img.shape[:2])
        if scale < 1:
            import cv2

            img = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out


def random_background(photos: Sequence[np.ndarray], seed: int, size: int) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1]: mostly a random square crop of one of ``photos`` (85 %, flipped half the
    time), else a random gradient with noise; a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    if photos and rng.random() < 0.85:
        import cv2

        img = photos[int(rng.integers(len(photos)))]
        h, w = img.shape[:2]
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return crop.astype(np.float32) / 255.0
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (np.cos(angle) * xx + np.sin(angle) * yy - min(0, np.cos(angle)) - min(0, np.sin(angle))) / 1.5
    img = c0 + (c1 - c0) * t[..., None] + rng.normal(0, rng.uniform(0, 0.08), (size, size, 3))
    return img.clip(0, 1).astype(np.float32)
