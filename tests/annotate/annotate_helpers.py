"""Shared helpers for the annotate tests (synthetic photos and faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from annotate.skeleton import template_face


def write_photo(path: Path, seed: int, size: tuple[int, int] = (200, 160)) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def face_points(seed: int = 0, cx: float = 100, cy: float = 80, size: float = 90) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return template_face(cx, cy, size) + rng.normal(0, 1.0, (68, 2))
