"""Draw a fitted face over its photo: mesh wireframe or a pre-rendered shaded face, plus 68 landmarks.

All images are uint8 RGB (H, W, 3); 2D points are photo pixels, x right, y down (see docs/ARCHITECTURE.md).

Two ways to show the mesh, both fast on a 1024 px photo with the full 26k-vertex ICT mesh:

* :func:`draw_wireframe` -- edges of the front-facing triangles in one ``cv2.polylines`` call, alpha-blended.
  Front-facing is decided by 2D winding (model triangles are counter-clockwise seen from outside, and the
  image y axis points down, so a visible triangle has negative signed area in pixel coordinates). That culls
  back faces; with a depth column a coarse z-buffer (:func:`unoccluded_faces`) also hides most faces behind
  other faces (mouth inside, teeth, the far side of the nose). For exact visibility pass ``visible_faces``
  from the renderer (:func:`visible_faces_from_face_index`).
* :func:`blend_render` -- alpha-blend a shaded image rendered by ``msma.render`` (optionally rendered in the
  224 px aligned crop and warped back with the crop -> photo matrix).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cv2
import numpy as np

from msma.pixels import opencv_affine

__all__ = [
    "DETECTED_COLOR",
    "FITTED_COLOR",
    "WIRE_COLOR",
    "blend_render",
    "draw_landmarks",
    "draw_overlay",
    "draw_wireframe",
    "front_facing",
    "unoccluded_faces",
    "visible_faces_from_face_index",
    "warp_to_photo",
]

WIRE_COLOR = (80, 220, 255)  # light cyan
FITTED_COLOR = (40, 255, 80)  # green: landmarks of the fitted model
DETECTED_COLOR = (255, 60, 60)  # red: landmarks found by the detector

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SCALE = 1 << _SHIFT


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return image


def _check_points(points, name: str, n: int | None = None) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2 or (n is not None and points.shape[0] != n):
        want = f"({n}, 2)" if n is not None else "(N, 2)"
        raise ValueError(f"{name} must be {want}, got {points.shape}")
    return points[:, :2]


def _blend_mask(image: np.ndarray, color: Sequence[int], coverage: np.ndarray, alpha: float, soft: bool) -> np.ndarray:
    """image * (1 - a) + color * a with a = alpha * coverage / 255, only inside the bounding box of coverage.

    ``soft`` = coverage has intermediate values (antialiased); otherwise any non-zero value counts as full.
    """
    out = image.copy()
    rows = np.flatnonzero(coverage.any(axis=1))
    if len(rows) == 0:
        return out
    cols = np.flatnonzero(coverage[rows[0] : rows[-1] + 1].any(axis=0))
    roi = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    src = np.ascontiguousarray(image[roi])
    layer = np.empty_like(src)
    layer[:] = np.asarray(color, dtype=np.uint8)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    if soft:
        weight = coverage[roi].astype(np.float32) * (alpha / 255.0)
        out[roi] = cv2.blendLinear(src, layer, 1.0 - weight, weight)
    else:
        mixed = cv2.addWeighted(src, 1.0 - alpha, layer, alpha, 0.0)
        target = np.ascontiguousarray(out[roi])
        cv2.copyTo(mixed, coverage[roi], target)
        out[roi] = target
    return out


# --------------------------------------------------------------------------------------------------------------
# wireframe
# --------------------------------------------------------------------------------------------------------------
_EDGE_CACHE: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}


def _unique_edges(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(E, 2) unique undirected edges and (3F,) edge id of each triangle side (sides 01, 12, 20 stacked).

    Cached per face array (keyed by a hash of its bytes): a session overlays the same topology many times.
    """
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    key = hashlib.blake2b(faces.data, digest_size=16).digest() + faces.shape[0].to_bytes(8, "little")
    cached = _EDGE_CACHE.get(key)
    if cached is None:
        sides = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        sides.sort(axis=1)
        base = max(n_vertices, int(faces.max(initial=0)) + 1)
        codes, corner_edge = np.unique(sides[:, 0] * base + sides[:, 1], return_inverse=True)
        cached = (np.stack([codes // base, codes % base], axis=1), corner_edge.reshape(-1))
        if len(_EDGE_CACHE) >= 8:
            _EDGE_CACHE.pop(next(iter(_EDGE_CACHE)))
        _EDGE_CACHE[key] = cached
    return cached

def front_facing(projected_vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles whose projected winding shows their outside (negative signed area, y down)."""
    tri = np.asarray(projected_vertices, dtype=np.float64)[np.asarray(faces)]
    ab = tri[:, 1] - tri[:, 0]
    ac = tri[:, 2] - tri[:, 0]
    return (ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]) < 0


def unoccluded_faces(
    screen_vertices: np.ndarray, faces: np.ndarray, cell_px: float | None = None, tolerance: float = 0.03
) -> np.ndarray:
    """(F,) bool: approximate visibility from per-vertex depth with a coarse point-splat z-buffer.

    ``screen_vertices`` is (N, 3) [x_pix, y_pix, depth] with smaller depth nearer (``msma.render`` screen
    space). Every vertex writes its depth into a grid of ``cell_px`` cells (default: 2.5 x the median
    projected edge length); a triangle is kept when its nearest vertex is within ``tolerance`` x the mesh's
    depth range of the nearest depth in its centroid's cell. This hides the inside of the mouth, teeth, eye
    sockets and the far side of the nose -- cheap (a few ms) but approximate; a rasteriser's face ids
    (:func:`visible_faces_from_face_index`) are exact.
    """
    pts = np.asarray(screen_vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"screen_vertices must be (N, 3) [x, y, depth], got {pts.shape}")
    finite = np.all(np.isfinite(pts[:, :3]), axis=1)
    if not finite.any() or len(faces) == 0:
        return np.zeros(len(faces), dtype=bool)
    xy = pts[:, :2]
    depth = np.where(finite, pts[:, 2], np.inf)
    if cell_px is None:
        sides = np.linalg.norm(xy[faces[:, 1]] - xy[faces[:, 0]], axis=1)
        cell_px = 2.5 * float(np.median(sides[np.isfinite(sides)])) if np.isfinite(sides).any() else 4.0
    cell_px = max(float(cell_px), 1.0)
    origin = xy[finite].min(axis=0)
    grid = np.floor((np.where(finite[:, None], xy, origin) - origin) / cell_px).astype(np.int64)
    shape = grid[finite].max(axis=0) + 1
    zbuf = np.full(int(shape[0]) * int(shape[1]), np.inf)
    np.minimum.at(zbuf, grid[finite, 0] * shape[1] + grid[finite, 1], depth[finite])
    centroid = (xy[faces].mean(axis=1) - origin) / cell_px
    cells = np.clip(np.floor(np.nan_to_num(centroid)).astype(np.int64), 0, shape - 1)
    nearest = zbuf[cells[:, 0] * shape[1] + cells[:, 1]]
    span = float(np.ptp(depth[finite])) or 1.0
    face_depth = depth[faces].min(axis=1)
    return np.isfinite(face_depth) & (face_depth <= nearest + tolerance * span)


def visible_faces_from_face_index(face_index, n_faces: int) -> np.ndarray:
    """(F,) bool from a rasteriser's per-pixel face index ((H, W) or (B, H, W), -1 = background)."""
    if hasattr(face_index, "detach"):  # torch tensor
        face_index = face_index.detach().cpu().numpy()
    ids = np.unique(np.asarray(face_index).reshape(-1))
    ids = ids[(ids >= 0) & (ids < n_faces)]
    mask = np.zeros(n_faces, dtype=bool)
    mask[ids] = True
    return mask


def draw_wireframe(
    image: np.ndarray,
    projected_vertices: np.ndarray,
    faces: np.ndarray,
    visible_faces: np.ndarray | None = None,
    color: Sequence[int] = WIRE_COLOR,
    alpha: float = 0.4,
    thickness: int = 1,
    antialias: bool = False,
) -> np.ndarray:
    """Edges of the visible triangles blended over ``image`` with opacity ``alpha``.

    Args:
        image: (H, W, 3) uint8 photo.
        projected_vertices: (N, 2) photo pixels, or (N, 3) [x_pix, y_pix, depth] (smaller depth = nearer).
        faces: (F, 3) vertex indices.
        visible_faces: (F,) bool or integer face ids to draw. None = back-face culling by 2D winding, plus
            :func:`unoccluded_faces` when a depth column is given.
        color, alpha, thickness: line style; ``antialias`` uses cv2.LINE_AA.
    """
    image = _check_image(image)
    points = _check_points(projected_vertices, "projected_vertices")
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {faces.shape}")
    if visible_faces is None:
        keep = front_facing(points, faces)
        if np.asarray(projected_vertices).shape[1] >= 3:
            keep &= unoccluded_faces(projected_vertices, faces)
    else:
        visible_faces = np.asarray(visible_faces)
        if visible_faces.dtype == bool:
            if visible_faces.shape != (len(faces),):
                raise ValueError(f"visible_faces mask must be ({len(faces)},), got {visible_faces.shape}")
            keep = visible_faces
        else:
            keep = np.zeros(len(faces), dtype=bool)
            keep[visible_faces.astype(np.int64)] = True
    h, w = image.shape[:2]
    coverage = np.zeros((h, w), dtype=np.uint8)
    edges, corner_edge = _unique_edges(faces, len(points))
    # an edge is drawn when any triangle using it is visible; each edge once
    edge_on = np.bincount(corner_edge[np.tile(keep, 3)], minlength=len(edges)) > 0
    segments = points[edges[edge_on]]
    ok = np.all(np.isfinite(segments), axis=(1, 2))
    # drop segments entirely outside the image (and huge coordinates that would overflow int32)
    lo = segments.min(axis=1)
    hi = segments.max(axis=1)
    ok &= (hi[:, 0] >= -thickness) & (hi[:, 1] >= -thickness) & (lo[:, 0] <= w + thickness)
    ok &= (lo[:, 1] <= h + thickness) & np.all(np.abs(segments) < 8 * max(h, w), axis=(1, 2))
    segments = np.ascontiguousarray(np.round(segments[ok] * _SCALE).astype(np.int32))
    if len(segments):
        line = cv2.LINE_AA if antialias else cv2.LINE_8
        cv2.polylines(coverage, segments, False, 255, int(thickness), line, _SHIFT)
    return _blend_mask(image, color, coverage, alpha, soft=antialias)


# --------------------------------------------------------------------------------------------------------------
# rendered face
# --------------------------------------------------------------------------------------------------------------
def _as_uint8_rgb(render) -> np.ndarray:
    if hasattr(render, "detach"):
        render = render.detach().cpu().numpy()
    render = np.asarray(render)
    if render.ndim == 4 and render.shape[0] == 1:
        render = render[0]
    if render.ndim == 3 and render.shape[0] == 3 and render.shape[2] != 3:  # (3, H, W)
        render = np.transpose(render, (1, 2, 0))
    if render.ndim != 3 or render.shape[2] != 3:
        raise ValueError(f"render_rgb must be (H, W, 3), got {render.shape}")
    if render.dtype != np.uint8:
        render = np.clip(np.asarray(render, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return render


def _as_float_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != shape:
        raise ValueError(f"render_mask must be {shape}, got {mask.shape}")
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def warp_to_photo(
    render_rgb, render_mask, crop_to_photo: np.ndarray, photo_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a render made in the aligned crop back to photo pixels with the (2, 3) crop -> photo matrix.

    Returns (rgb (H, W, 3) uint8, mask (H, W) float32 in [0, 1]).
    """
    rgb = _as_uint8_rgb(render_rgb)
    mask = _as_float_mask(render_mask, rgb.shape[:2])
    h, w = int(photo_shape[0]), int(photo_shape[1])
    matrix = np.asarray(crop_to_photo, dtype=np.float64).reshape(2, 3)
    rgb = cv2.warpAffine(rgb, opencv_affine(matrix), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpAffine(mask, opencv_affine(matrix), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return rgb, np.clip(mask, 0.0, 1.0)


def blend_render(
    image: np.ndarray,
    render_rgb,
    render_mask,
    alpha: float = 0.6,
    crop_to_photo: np.ndarray | None = None,
) -> np.ndarray:
    """Alpha-blend a rendered face over the photo where ``render_mask`` is set.

    Args:
        image: (H, W, 3) uint8 photo.
        render_rgb: (h, w, 3) uint8 or float in [0, 1] (numpy or torch; a leading batch of 1 is dropped).
        render_mask: (h, w) bool / float coverage / uint8.
        alpha: opacity of the render.
        crop_to_photo: (2, 3) matrix when the render is in the aligned crop (``AlignedFace.inverse``);
            otherwise the render must already be photo-sized.
    """
    image = _check_image(image)
    if crop_to_photo is not None:
        rgb, mask = warp_to_photo(render_rgb, render_mask, crop_to_photo, image.shape)
    else:
        rgb = _as_uint8_rgb(render_rgb)
        if rgb.shape != image.shape:
            raise ValueError(f"render {rgb.shape} must match the photo {image.shape}, or pass crop_to_photo")
        mask = _as_float_mask(render_mask, rgb.shape[:2])
    ys, xs = np.nonzero(mask > 0)
    out = image.copy()
    if len(ys):
        a = (mask[ys, xs] * float(alpha))[:, None]
        mixed = image[ys, xs].astype(np.float32) * (1.0 - a) + rgb[ys, xs].astype(np.float32) * a
        out[ys, xs] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------------------------
# landmarks
# --------------------------------------------------------------------------------------------------------------
def draw_landmarks(
    image: np.ndarray,
    landmarks68: np.ndarray | None = None,
    detected_landmarks68: np.ndarray | None = None,
    radius: int | None = None,
    legend: bool = True,
    fitted_color: Sequence[int] = FITTED_COLOR,
    detected_color: Sequence[int] = DETECTED_COLOR,
) -> np.ndarray:
    """Detected landmarks as rings, fitted (model) landmarks as filled dots, and a small legend.

    Works for any number of points (68 expected). ``radius`` defaults to ~1/300 of the image size.
    """
    out = _check_image(image).copy()
    h, w = out.shape[:2]
    radius = int(radius) if radius is not None else max(2, round(min(h, w) / 300))
    entries = []
    if detected_landmarks68 is not None:
        pts = _check_points(detected_landmarks68, "detected_landmarks68")
        for x, y in np.round(pts * _SCALE).astype(np.int64).tolist():
            cv2.circle(out, (x, y), (radius + 1) * _SCALE, tuple(int(c) for c in detected_color),
                       max(2, radius // 2), cv2.LINE_AA, _SHIFT)
        entries.append(("detected", detected_color, False))
    if landmarks68 is not None:
        pts = _check_points(landmarks68, "landmarks68")
        for x, y in np.round(pts * _SCALE).astype(np.int64).tolist():
            cv2.circle(out, (x, y), radius * _SCALE, tuple(int(c) for c in fitted_color), -1, cv2.LINE_AA, _SHIFT)
        entries.append(("fitted", fitted_color, True))
    if legend and entries:
        _draw_legend(out, entries, radius)
    return out


def _draw_legend(out: np.ndarray, entries: list[tuple[str, Sequence[int], bool]], radius: int) -> None:
    h, w = out.shape[:2]
    scale = max(0.35, min(h, w) / 1400)
    thick = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize("detected", font, scale, thick)
    pad = max(4, th // 2)
    dot = max(radius, th // 3)
    row = th + base + pad
    box_w = pad * 3 + 2 * dot + tw
    box_h = pad + row * len(entries)
    x0, y0 = pad, pad
    if x0 + box_w >= w or y0 + box_h >= h:
        return  # image too small for a legend
    region = out[y0 : y0 + box_h, x0 : x0 + box_w]
    region[:] = (region.astype(np.float32) * 0.45).astype(np.uint8)  # darkened backdrop
    for i, (label, color, filled) in enumerate(entries):
        cy = y0 + pad + i * row + th // 2 + 1
        cx = x0 + pad + dot
        color = tuple(int(c) for c in color)
        cv2.circle(out, (cx, cy), dot, color, -1 if filled else max(1, dot // 2), cv2.LINE_AA)
        cv2.putText(out, label, (cx + dot + pad, cy + th // 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


# --------------------------------------------------------------------------------------------------------------
# all together
# --------------------------------------------------------------------------------------------------------------
def draw_overlay(
    image: np.ndarray,
    projected_vertices: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    visible_faces: np.ndarray | None = None,
    landmarks68: np.ndarray | None = None,
    detected_landmarks68: np.ndarray | None = None,
    alpha: float = 0.4,
    render_rgb=None,
    render_mask=None,
    crop_to_photo: np.ndarray | None = None,
    wireframe: bool | None = None,
    legend: bool = True,
) -> np.ndarray:
    """Photo with the fitted mesh and landmarks drawn over it; returns a new (H, W, 3) uint8 image.

    The mesh is shown as the blended render when ``render_rgb``/``render_mask`` are given (see
    :func:`blend_render`), and as a wireframe of ``projected_vertices``/``faces`` when ``wireframe`` is True,
    or when it is None and no render is given. ``alpha`` is the opacity of the mesh layer.
    """
    out = _check_image(image)
    if render_rgb is not None:
        if render_mask is None:
            raise ValueError("render_rgb needs render_mask")
        out = blend_render(out, render_rgb, render_mask, alpha=alpha, crop_to_photo=crop_to_photo)
    if wireframe is None:
        wireframe = render_rgb is None
    if wireframe and projected_vertices is not None and faces is not None:
        out = draw_wireframe(out, projected_vertices, faces, visible_faces, alpha=alpha)
    elif wireframe and render_rgb is None and (projected_vertices is None) != (faces is None):
        raise ValueError("a wireframe needs both projected_vertices and faces")
    if landmarks68 is not None or detected_landmarks68 is not None:
        out = draw_landmarks(out, landmarks68, detected_landmarks68, legend=legend)
    elif out is image:
        out = image.copy()
    return out
