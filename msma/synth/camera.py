"""Camera effects on a rendered synthetic face: occluders, exposure, blur, sensor noise, JPEG re-compression."""

from __future__ import annotations

import numpy as np


def camera_effects(image: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Occluders, exposure, blur, noise and JPEG on one uint8 (H, W, 3) image; mask loses occluded pixels."""
    import cv2

    rng = np.random.default_rng(seed)
    img = image.astype(np.float32) / 255.0
    h, w = img.shape[:2]
    mask = mask.copy()
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            occ = np.zeros((h, w), np.uint8)
            cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.3, 1.0) * h
            ax, ay = rng.uniform(0.08, 0.25) * w, rng.uniform(0.05, 0.2) * h
            if rng.random() < 0.5:
                cv2.ellipse(occ, (int(cx), int(cy)), (int(ax), int(ay)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            else:
                cv2.rectangle(occ, (int(cx - ax), int(cy - ay)), (int(cx + ax), int(cy + ay)), 1, -1)
            colour = rng.uniform(0, 1, 3) * rng.uniform(0.3, 1.0)
            texture = colour + rng.normal(0, 0.03, (h, w, 3))
            sel = occ.astype(bool)
            img[sel] = texture[sel]
            mask &= ~sel
    # exposure / contrast / gamma
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-0.05, 0.05)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.5) * w / 224
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < 0.7:
        img = img + rng.normal(0, rng.uniform(0.005, 0.04), img.shape)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out), mask
