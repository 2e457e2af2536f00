"""Grey Lambert-shaded render of a reconstructed face: the photo overlay's shaded mesh and the app's "shape only" view.

One renderer for both: :func:`shade_face` rasterises a face (``msma.api.FaceReconstruction``: ``projected``,
``vertices``, ``faces``, ``coefficients.angles``) into a window of the photo; :func:`shaded_in_photo` pastes it back
into the full photo frame (the overlay), :func:`shape_view` composes it on a plain background around the face.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OVERLAY_LIGHT = (0.0, 0.0, 1.0)  # light from the camera: the overlay reads as the photo's face, shaded by slant
OVERLAY_AMBIENT, OVERLAY_TINT = 0.25, (0.85, 0.85, 0.9)
SHAPE_LIGHT = (0.3, 0.4, 1.0)  # from the upper right: the shape view shows relief
SHAPE_AMBIENT, SHAPE_TINT = 0.18, (0.82, 0.82, 0.86)


def shade_face(face, origin: tuple[float, float], scale: float, size: tuple[int, int], *,
               triangles: np.ndarray | None = None, light: Sequence[float] = OVERLAY_LIGHT,
               ambient: float = OVERLAY_AMBIENT, tint: Sequence[float] = OVERLAY_TINT) -> tuple[np.ndarray, np.ndarray]:
    """Render ``face`` in the photo window whose top-left corner is ``origin`` (photo pixels), resized by ``scale``,
    as an image of ``size`` (height, width). ``triangles`` defaults to all of ``face.faces``.

    Returns (rgb (h, w, 3) float32 in [0, 1], mask (h, w) float32)."""
    import torch

    from msma.face_model import euler_to_matrix, vertex_normals
    from msma.render import Renderer

    triangles = face.faces if triangles is None else triangles
    screen = torch.as_tensor(face.projected, dtype=torch.float32).clone()
    screen[:, 0] = (screen[:, 0] - origin[0]) * scale
    screen[:, 1] = (screen[:, 1] - origin[1]) * scale
    verts = torch.as_tensor(face.vertices, dtype=torch.float32)[None]
    tris = torch.as_tensor(triangles, dtype=torch.long)
    normals = vertex_normals(verts, tris)[0] @ euler_to_matrix(face.coefficients.angles.float())[0].T
    direction = torch.tensor(light, dtype=torch.float32)
    direction = direction / direction.norm()
    lambert = (normals @ direction).clamp(0, 1)[:, None]
    shade = (ambient + (1 - ambient) * lambert).expand(-1, 3) * torch.tensor(tint, dtype=torch.float32)
    with torch.no_grad():
        out = Renderer(size).render_colors(screen[None], tris, shade[None])
    return out.image[0].clamp(0, 1).numpy(), out.mask[0].numpy().astype(np.float32)


def shaded_in_photo(face, shape: tuple[int, int], max_side: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The face's own triangles (``face.face_triangles`` when set), shaded, in the photo frame of ``shape``
    (height, width) -> (rgb (H, W, 3) uint8, mask (H, W) float32). Only the face's bounding box is rasterised, at
    most ``max_side`` pixels on a side, then pasted back."""
    import cv2

    height, width = shape
    rgb_full = np.zeros((height, width, 3), np.uint8)
    mask_full = np.zeros((height, width), np.float32)
    triangles = face.faces if face.face_triangles is None else face.faces[face.face_triangles]
    xy = face.projected[np.unique(triangles), :2]
    x0, y0 = np.floor(np.maximum(xy.min(0), 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(xy.max(0) + 1, [width, height])).astype(int)
    if x1 <= x0 or y1 <= y0:
        return rgb_full, mask_full
    box_w, box_h = x1 - x0, y1 - y0
    scale = min(1.0, max_side / max(box_w, box_h))
    w, h = max(1, round(box_w * scale)), max(1, round(box_h * scale))
    rgb, mask = shade_face(face, (x0, y0), scale, (h, w), triangles=triangles)
    rgb = (rgb * 255).astype(np.uint8)
    if scale < 1.0:
        rgb = cv2.resize(rgb, (box_w, box_h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (box_w, box_h), interpolation=cv2.INTER_LINEAR)
    rgb_full[y0:y1, x0:x1] = rgb
    mask_full[y0:y1, x0:x1] = mask
    return rgb_full, mask_full


def shape_view(face, shape: tuple[int, int], max_side: int = 512, margin: float = 0.35,
               background: Sequence[int] = (238, 238, 238)) -> np.ndarray:
    """The whole mesh alone, lit from the upper right, in the photo frame of ``shape`` (height, width), cropped
    around the face (box and projected mesh plus ``margin``) on a plain ``background`` -> uint8 (h, w, 3)."""
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
    rgb, mask = shade_face(face, (left, top), scale, (h, w), light=SHAPE_LIGHT, ambient=SHAPE_AMBIENT,
                           tint=SHAPE_TINT)
    rgb, mask = rgb * 255, mask[..., None]
    bg = np.broadcast_to(np.asarray(background, np.float32), rgb.shape)
    return np.clip(rgb * mask + bg * (1 - mask) + 0.5, 0, 255).astype(np.uint8)
