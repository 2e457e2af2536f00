"""UV texture unwrapping: photo colours into a texture atlas of the face model, visibility aware, with a symmetric
fill of the occluded side.

Texture layout (read this before exporting or rendering the texture)
-------------------------------------------------------------------
The ICT model's own UVs are UDIM-style tiles: the face in ``u`` in [0, 1], head and neck in [1, 2], and both eyeballs
(two shells each) in [0, 1] *on top of* the face. One image cannot hold that, so `TextureUnwrapper` packs the tiles
into one square **atlas** and the unwrapped texture lives in that layout: render / export it with
``unwrapper.uv`` and ``unwrapper.triangle_uv_index`` (same row order as ``model.triangles``), not ``model.uv``.
Groups of triangles = (3D connected component, UDIM tile); groups of one tile that do not overlap in UV share a
slot. Slot sizes give the face region full texel density and everything else (head, neck, eyeballs) 5 % of it,
with a minimum slot size so the eyes (iris) stay usable. Models without UVs (BFM09) get a planar projection of
the mean shape. UVs follow OBJ / `msma.render`: v up, texel ``(r, c)`` centre at ``((c + .5) / S, 1 - (r + .5) / S)``.

What is cached per model (``__init__``)
---------------------------------------
* The UV rasterisation: for each texel, the triangle covering its centre and its barycentrics. It is done with
  `msma.render.Renderer` (not OpenCV) because (a) it samples exactly the texel centres that ``render_texture``'s
  ``grid_sample`` reads, and (b) its z-buffer resolves UV overlaps: each corner gets the depth ``1 + z_max - z``
  of the mean shape, so where the eyeball's back hemisphere folds onto its front in UV the front (+z, visible)
  surface owns the texels.
* Each texel's 3D position on the mean shape, a mirror map (texel -> nearest texel to its ``x -> -x`` mirror image,
  `scipy.spatial.cKDTree`, rejected when farther than 3 texel spacings) and the nearest covered texel of every
  uncovered texel (for the seam fill).
* A sparse (texels x vertices) barycentric matrix, so any per-vertex quantity becomes per-texel in one product.

`TextureUnwrapper.unwrap` per photo: texel photo positions (barycentric interpolation of the screen vertices),
z-buffer visibility against a rasterisation of the mesh in photo space (face bounding box at <= ``zbuffer_size``
px, back faces culled, read bilinearly with a slope-scaled depth bias), a smooth facing weight
(``n . view``: 0 at ``facing_range[0]``, 1 at ``facing_range[1]``), bilinear photo sampling (``cv2.remap``),
then ``texture = w * photo + (1 - w) * (w_m * photo[mirror] + (1 - w_m) * fallback)`` and a nearest-texel fill of
uncovered texels so bilinear sampling at UV seams never reads black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
import torch
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from msma.face_model import MEAN_SKIN_ALBEDO, FaceModel, vertex_normals
from msma.render import Renderer
from msma.threads import single_torch_thread

__all__ = ["TextureUnwrapper", "UnwrapResult", "atlas_layout"]

NON_FACE_IMPORTANCE = 0.05  # texel density of non-face groups relative to the face region
MIN_SLOT_SIZE = 0.125  # smallest slot side (fraction of the atlas), keeps the eyeballs' iris usable
SLOT_PADDING_TEXELS = 3


@dataclass
class UnwrapResult:
    texture: np.ndarray  # (S, S, 3) uint8, atlas layout (`TextureUnwrapper.uv`, `.triangle_uv_index`)
    visibility: np.ndarray  # (S, S) float32 in [0, 1]: weight of the texel's own photo sample (0 off the mesh)
    mirror_weight: np.ndarray  # (S, S) float32: weight of the mirrored texel's photo sample
    # the rest, 1 - visibility - mirror_weight on covered texels, came from the fallback colours
    uv: np.ndarray  # (T', 2) the atlas UVs the texture is laid out in (= TextureUnwrapper.uv); export / render with
    face_uv_index: np.ndarray  # (F, 3) these two (= TextureUnwrapper.triangle_uv_index), not model.uv


# ---------------------------------------------------------------------------------------------- atlas layout
def _as_numpy(x, dtype=np.float64) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _planar_uv(mean: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front (x, y) projection of the mean shape into [0, 1]^2, aspect kept: for models without UVs."""
    lo, hi = mean[:, :2].min(0), mean[:, :2].max(0)
    uv = (mean[:, :2] - lo) / max(float((hi - lo).max()), 1e-12)
    uv += (1.0 - uv.max(0)) / 2
    return uv, triangles.copy()


def _pack(sizes: np.ndarray) -> np.ndarray | None:
    """Bottom-left packing of rectangles (n, 2) (w, h) into the unit square (y down), in the given order."""
    placed: list[tuple[float, float, float, float]] = []
    for w, h in sizes:
        xs = sorted({0.0, *(x + pw for x, _, pw, _ in placed)})
        ys = sorted({0.0, *(y + ph for _, y, _, ph in placed)})
        spot = None
        for y in ys:
            for x in xs:
                if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
                    continue
                if any(x < px + pw - 1e-9 and px < x + w - 1e-9 and y < py + ph - 1e-9 and py < y + h - 1e-9
                       for px, py, pw, ph in placed):
                    continue
                spot = (x, y)
                break
            if spot is not None:
                break
        if spot is None:
            return None
        placed.append((spot[0], spot[1], float(w), float(h)))
    return np.asarray([p[:2] for p in placed])


def atlas_layout(model: FaceModel, texture_size: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack the model's UV tiles / overlapping UV groups into one square atlas.

    Returns ``uv`` (T', 2) in [0, 1] (v up), ``triangle_uv_index`` (F, 3) rows of ``uv`` per ``model.triangles``
    row, and ``triangle_slot`` (F,) the atlas slot of each triangle.
    """
    mean = model.mean.detach().cpu().numpy().astype(np.float64)
    triangles = model.triangles.detach().cpu().numpy().astype(np.int64)
    n, n_tri = len(mean), len(triangles)
    if model.uv is None or model.triangle_uv_index is None:
        uv, tuv = _planar_uv(mean, triangles)
    else:
        uv, tuv = np.asarray(model.uv, np.float64), np.asarray(model.triangle_uv_index, np.int64)

    # groups: (connected component in 3D, UDIM tile)
    rows = triangles.reshape(-1)
    adjacency = sp.coo_matrix((np.ones(rows.size), (rows, np.roll(triangles, 1, axis=1).reshape(-1))), shape=(n, n))
    _, component = connected_components(adjacency, directed=False)
    corner_uv = uv[tuv]  # (F, 3, 2)
    tile = np.floor(corner_uv.mean(1)).astype(np.int64)  # (F, 2)
    keys = np.stack([component[triangles[:, 0]], tile[:, 0], tile[:, 1]], 1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1
    local = corner_uv - tile[:, None, :]  # tile-local uv

    # merge groups of one tile that do not overlap in UV (coarse 64^2 occupancy from 4 points per triangle)
    weights = np.array([[1, 1, 1], [4, 1, 1], [1, 4, 1], [1, 1, 4]], np.float64) / np.array([[3], [6], [6], [6]])
    samples = np.einsum("sc,fcd->fsd", weights, local)
    cells = np.clip((samples * 64).astype(np.int64), 0, 63)
    cell_id = cells[..., 1] * 64 + cells[..., 0]
    occupancy = [set(np.unique(cell_id[group == g]).tolist()) for g in range(n_groups)]
    group_tile = np.zeros((n_groups, 2), np.int64)
    group_tile[group] = tile
    area3 = 0.5 * np.linalg.norm(np.cross(mean[triangles[:, 1]] - mean[triangles[:, 0]],
                                          mean[triangles[:, 2]] - mean[triangles[:, 0]]), axis=1)
    order = np.argsort(-np.bincount(group, area3, n_groups), kind="stable")
    slot_of_group = np.full(n_groups, -1)
    slots: list[list[int]] = []
    for g in order:
        for s, members in enumerate(slots):
            if (group_tile[members[0]] != group_tile[g]).any():
                continue
            cells_s = set().union(*(occupancy[m] for m in members))
            if len(cells_s & occupancy[g]) <= 0.02 * min(len(cells_s), len(occupancy[g])):
                members.append(int(g))
                slot_of_group[g] = s
                break
        else:
            slot_of_group[g] = len(slots)
            slots.append([int(g)])
    slot = slot_of_group[group]
    n_slots = len(slots)

    # slot sizes: texel density ~ importance (face region 1, the rest NON_FACE_IMPORTANCE)
    face = np.zeros(n, bool)
    face[model.face_vertices.detach().cpu().numpy()] = True
    in_face = np.bincount(slot, face[triangles].mean(1) * area3, n_slots) / np.maximum(
        np.bincount(slot, area3, n_slots), 1e-12)
    importance = np.where(in_face >= 0.5, 1.0, NON_FACE_IMPORTANCE)
    e1, e2 = local[:, 1] - local[:, 0], local[:, 2] - local[:, 0]
    area_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    lo = np.stack([local[slot == s].reshape(-1, 2).min(0) for s in range(n_slots)])
    hi = np.stack([local[slot == s].reshape(-1, 2).max(0) for s in range(n_slots)])
    extent = np.maximum(hi - lo, 1e-6)
    density = np.sqrt(importance * np.bincount(slot, area3, n_slots) / np.maximum(np.bincount(slot, area_uv, n_slots),
                                                                               1e-12))
    rel = extent * density[:, None]  # (slots, 2) w, h at scale 1
    pad = SLOT_PADDING_TEXELS / float(texture_size)
    placing = np.argsort(-rel.prod(1), kind="stable")

    def scales_for(s: float) -> np.ndarray:
        return np.maximum(s, MIN_SLOT_SIZE / rel.max(1))

    def attempt(s: float) -> np.ndarray | None:
        sizes = rel * scales_for(s)[:, None] + 2 * pad
        pos = _pack(sizes[placing])
        if pos is None:
            return None
        out = np.zeros((n_slots, 2))
        out[placing] = pos
        return out

    low, high = 0.0, 1.0 / rel.max()
    best = attempt(low)
    if best is None:
        raise ValueError(f"cannot pack {n_slots} UV slots into one atlas (too many small groups)")
    for _ in range(30):
        mid = (low + high) / 2
        pos = attempt(mid)
        if pos is None:
            high = mid
        else:
            low, best = mid, pos
    scale = scales_for(low) * density  # tile-local uv -> atlas units
    # one new uv row per (slot, old uv row) pair
    slot_corner = np.repeat(slot, 3)
    pair = slot_corner * len(uv) + tuv.reshape(-1)
    unique, inverse = np.unique(pair, return_inverse=True)
    s_u = unique // len(uv)
    first = np.zeros(len(unique), np.int64)
    first[inverse] = np.arange(len(inverse))
    loc = local.reshape(-1, 2)[first]  # tile-local uv of each new row
    x = best[s_u, 0] + pad + (loc[:, 0] - lo[s_u, 0]) * scale[s_u]
    y = best[s_u, 1] + pad + (hi[s_u, 1] - loc[:, 1]) * scale[s_u]
    new_uv = np.stack([x, 1.0 - y], 1).astype(np.float32)
    return new_uv, inverse.reshape(n_tri, 3).astype(np.int64), slot


# ---------------------------------------------------------------------------------------------- helpers
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _squeeze_vertices(x, name: str, n: int) -> np.ndarray:
    a = _as_numpy(x, np.float64)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.shape != (n, 3):
        raise ValueError(f"{name} must be ({n}, 3), got {a.shape}")
    return a


class TextureUnwrapper:
    """Photo -> UV texture for one `FaceModel`; build once, call `unwrap` per photo.

    Args:
        model: the face model (its mean shape gives texel positions and the mirror symmetry).
        texture_size: side ``S`` of the square texture.
        renderer_backend: `msma.render.Renderer` backend for the UV and photo-space rasterisations.
        zbuffer_size: longest side of the photo-space z-buffer (the face bounding box is rasterised at this size).
        depth_tolerance: constant z-test slack as a fraction of the mean shape's depth range (a slope-scaled term
            is added per triangle).
        facing_range: ``n . view`` at which the photo weight starts rising from 0 and reaches 1.
        silhouette_margin: photo weight fades to 0 over this fraction of ``zbuffer_size`` inside the mesh's outer
            silhouette (background / hair next to a slightly misfitted outline is not sampled).
    """

    def __init__(
        self,
        model: FaceModel,
        texture_size: int = 512,
        renderer_backend: str = "auto",
        *,
        zbuffer_size: int = 256,
        depth_tolerance: float = 0.005,
        facing_range: tuple[float, float] = (0.05, 0.35),
        silhouette_margin: float = 0.015,
        photo_on_face_only: bool = True,
    ) -> None:
        if texture_size < 16:
            raise ValueError(f"texture_size must be >= 16, got {texture_size}")
        self.model = model
        self.texture_size = s = int(texture_size)
        self.renderer_backend = renderer_backend
        self.zbuffer_size = int(zbuffer_size)
        self.depth_tolerance = float(depth_tolerance)
        self.facing_range = (float(facing_range[0]), float(facing_range[1]))
        self.silhouette_margin = float(silhouette_margin)
        # Photo pixels only on the face region (and the eyes): what projects onto the scalp, ears and neck is mostly
        # hair, background and clothes, so those texels take the face's skin colour instead.
        self.photo_on_face_only = bool(photo_on_face_only)
        self.triangles = model.triangles.detach().cpu().numpy().astype(np.int64)
        mean = model.mean.detach().cpu().numpy().astype(np.float64)
        n = len(mean)
        self.uv, self.triangle_uv_index, triangle_slot = atlas_layout(model, s)

        # UV rasterisation: one screen vertex per triangle corner, depth favouring the front (+z) surface
        corner_vertex = self.triangles.reshape(-1)
        corner_uv = self.uv[self.triangle_uv_index.reshape(-1)].astype(np.float64)
        z = mean[corner_vertex, 2]
        screen = np.stack([corner_uv[:, 0] * s, (1.0 - corner_uv[:, 1]) * s, 1.0 + z.max() - z], 1)
        renderer = Renderer(s, backend=renderer_backend, perspective_correct=False)
        with torch.no_grad():
            frag = renderer.rasterize(torch.as_tensor(screen, dtype=torch.float32)[None],
                                      torch.arange(len(screen)).view(-1, 3))
        face_index = frag.face_index[0].reshape(-1).cpu().numpy()
        covered = face_index >= 0
        self.texel_mask = covered.reshape(s, s)  # (S, S) bool
        self.texel_index = np.flatnonzero(covered)  # (K,) flat texel index
        self.texel_face = face_index[covered]  # (K,)
        bary = frag.bary[0].reshape(-1, 3).cpu().numpy()[covered].astype(np.float64)
        bary = np.clip(bary, 0.0, None)
        self.texel_bary = bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)
        k = len(self.texel_index)
        if k == 0:
            raise ValueError("the UV layout covers no texel")
        corners = self.triangles[self.texel_face]  # (K, 3)
        self._weights = sp.csr_matrix(
            (self.texel_bary.reshape(-1), corners.reshape(-1), np.arange(0, 3 * k + 1, 3)), shape=(k, n))
        self.texel_position = self._weights @ mean  # (K, 3) on the mean shape
        self.texel_slot = triangle_slot[self.texel_face]
        skin = model.skin_triangles.detach().cpu().numpy().astype(bool)
        face = np.zeros(n, bool)
        face[model.face_vertices.detach().cpu().numpy()] = True
        self.texel_skin = skin[self.texel_face]
        self.texel_face_region = self.texel_skin & face[corners].all(1)
        self.texel_takes_photo = self.texel_face_region | ~self.texel_skin

        # mirror map on the mean shape, rejected beyond 3 local texel spacings
        tree = cKDTree(self.texel_position)
        dist, mirror = tree.query(self.texel_position * np.array([-1.0, 1.0, 1.0]))
        area3 = 0.5 * np.linalg.norm(np.cross(mean[self.triangles[:, 1]] - mean[self.triangles[:, 0]],
                                              mean[self.triangles[:, 2]] - mean[self.triangles[:, 0]]), axis=1)
        n_slots = int(triangle_slot.max()) + 1
        texels_per_slot = np.maximum(np.bincount(self.texel_slot, minlength=n_slots), 1)
        spacing = np.sqrt(np.bincount(triangle_slot, area3, n_slots) / texels_per_slot)
        self.mirror_index = np.where(dist <= 3.0 * spacing[self.texel_slot], mirror, -1)  # (K,) -1 = none

        # nearest covered texel for every texel (seam / gutter fill)
        _, (rows, cols) = ndimage.distance_transform_edt(~self.texel_mask, return_indices=True)
        self._fill_source = (rows * s + cols).reshape(-1)
        self._uncovered = np.flatnonzero(~covered)
        self._map_shape = (s, s)
        depth_range = float(np.ptp(mean[:, 2]))
        self._default_eps = self.depth_tolerance * max(depth_range, 1e-6)

    # --------------------------------------------------------------------------------------------- helpers
    def per_texel(self, vertex_values) -> np.ndarray:
        """Interpolate per-vertex values (N, C) to the covered texels -> (K, C)."""
        return self._weights @ _as_numpy(vertex_values)

    def to_image(self, texel_values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter (K,) or (K, C) texel values into an (S, S[, C]) image."""
        shape = (self.texture_size * self.texture_size, *texel_values.shape[1:])
        out = np.full(shape, fill, dtype=texel_values.dtype)
        out[self.texel_index] = texel_values
        return out.reshape(self._map_shape + texel_values.shape[1:])

    def _zbuffer_visible(self, screen: np.ndarray, pos: np.ndarray, region: tuple[int, int, int, int],
                         eps: float, clipped: tuple[bool, bool, bool, bool] = (False,) * 4,
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Z-test of texels (K, 3) [x, y, depth] against the mesh rasterised over the photo ``region``.

        Returns (visible (K,) bool, silhouette weight (K,) in [0, 1]: 0 on the mesh's outer silhouette, 1 from
        ``silhouette_margin`` x z-buffer size inside it, so a slightly misfitted outline does not sample background).
        ``clipped`` (left, top, right, bottom): region sides cut by the photo border, where the mesh goes on.

        The z-buffer is read bilinearly over covered pixels only (background neighbours are ignored, so a texel
        next to an occluder's silhouette is tested against the occluder), with a slope-scaled bias as in shadow
        mapping: ``eps + |grad depth| * 1 px`` of the texel's triangle, so sloped surfaces do not self-occlude.
        """
        x0, y0, x1, y1 = region
        zs = self.zbuffer_size / max(x1 - x0, y1 - y0)
        hz, wz = max(1, math.ceil((y1 - y0) * zs)), max(1, math.ceil((x1 - x0) * zs))
        verts = screen.copy()
        verts[:, 0] = (verts[:, 0] - x0) * zs
        verts[:, 1] = (verts[:, 1] - y0) * zs
        renderer = Renderer((hz, wz), backend=self.renderer_backend, cull_backfaces=True)
        with torch.no_grad(), single_torch_thread():
            frag = renderer.rasterize(torch.as_tensor(verts, dtype=torch.float32)[None],
                                      torch.as_tensor(self.triangles))
        mask = frag.mask[0].cpu().numpy().astype(np.float32)
        depth = frag.depth[0].cpu().numpy().astype(np.float32) * mask
        map_x = self.to_image(((pos[:, 0] - x0) * zs - 0.5).astype(np.float32), fill=-1.0)
        map_y = self.to_image(((pos[:, 1] - y0) * zs - 0.5).astype(np.float32), fill=-1.0)
        weight = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        summed = cv2.remap(depth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        weight = weight.reshape(-1)[self.texel_index]
        zbuffer = summed.reshape(-1)[self.texel_index] / np.maximum(weight, 1e-6)
        # depth slope of each triangle in z-buffer pixels (plane through its three screen vertices)
        tri = verts[self.triangles]  # (F, 3, 3)
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            gx = (e1[:, 2] * e2[:, 1] - e2[:, 2] * e1[:, 1]) / det
            gy = (e2[:, 2] * e1[:, 0] - e1[:, 2] * e2[:, 0]) / det
            slope = np.nan_to_num(np.hypot(gx, gy), nan=np.inf, posinf=np.inf)
        bias = eps + np.minimum(slope, 10.0 * eps)[self.texel_face]
        visible = (weight < 1e-3) | (pos[:, 2] <= zbuffer + bias)
        # distance (z-buffer px) to the outer silhouette
        inside = np.pad(mask.astype(np.uint8), 1)  # region border = background, except where the photo cut it
        for side, cut in zip(("left", "top", "right", "bottom"), clipped):
            if cut:
                edge = {"left": (slice(None), 0), "top": (0, slice(None)),
                        "right": (slice(None), -1), "bottom": (-1, slice(None))}[side]
                inside[edge] = 1
        dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)[1:-1, 1:-1]
        dist = cv2.remap(dist, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        margin = max(self.silhouette_margin * self.zbuffer_size, 1e-6)
        silhouette = _smoothstep(dist.reshape(-1)[self.texel_index] / margin)
        return visible, silhouette

    # --------------------------------------------------------------------------------------------- unwrap
    def unwrap(
        self,
        photo: np.ndarray,
        screen_vertices_photo,
        vertex_normals_camera=None,
        fallback_vertex_colors=None,
        *,
        camera_vertices=None,
        depth_eps: float | None = None,
    ) -> UnwrapResult:
        """Unwrap ``photo`` into the atlas.

        Args:
            photo: (H, W, 3) uint8 RGB.
            screen_vertices_photo: (N, 3) [x_pix, y_pix, depth] in photo pixels (pixel centres at +0.5, as
                `msma.render`), depth positive, smaller is nearer.
            vertex_normals_camera: (N, 3) camera-frame vertex normals; computed from ``camera_vertices`` when None.
            fallback_vertex_colors: (N, 3) float in [0, 1] (model albedo * shading) for texels seen neither
                directly nor mirrored; matched to the photo by a per-channel gain. None: mean visible colour
                (skin, or the group's own mean for non-skin groups such as the eyeballs).
            camera_vertices: (N, 3) camera-frame vertices (exact view directions; normals when not given).
            depth_eps: z-test slack in depth units (default ``depth_tolerance`` x the mean shape's depth range).
        Tensors or arrays; a leading batch dimension of 1 is accepted.
        """
        n = self.model.n_vertices
        photo = np.asarray(photo)
        if photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError(f"photo must be (H, W, 3), got {photo.shape}")
        if photo.dtype != np.uint8:
            photo = np.clip(np.round(photo * (255.0 if photo.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        screen = _squeeze_vertices(screen_vertices_photo, "screen_vertices_photo", n)
        if vertex_normals_camera is None and camera_vertices is None:
            raise ValueError("give vertex_normals_camera or camera_vertices")
        cam = None if camera_vertices is None else _squeeze_vertices(camera_vertices, "camera_vertices", n)
        if vertex_normals_camera is None:
            normals = vertex_normals(torch.as_tensor(cam, dtype=torch.float32)[None],
                                     torch.as_tensor(self.triangles))[0].numpy().astype(np.float64)
        else:
            normals = _squeeze_vertices(vertex_normals_camera, "vertex_normals_camera", n)
        eps = self._default_eps if depth_eps is None else float(depth_eps)
        s = self.texture_size
        height, width = photo.shape[:2]
        k = len(self.texel_index)

        pos = self.per_texel(screen)  # (K, 3) photo x, y, depth of each texel
        inside = (pos[:, 0] >= 0) & (pos[:, 0] <= width) & (pos[:, 1] >= 0) & (pos[:, 1] <= height)
        finite = np.isfinite(screen).all(1)
        lo = np.floor(screen[finite, :2].min(0)) if finite.any() else np.zeros(2)
        hi = np.ceil(screen[finite, :2].max(0)) if finite.any() else np.zeros(2)
        x0, y0 = int(max(lo[0] - 2, 0)), int(max(lo[1] - 2, 0))
        x1, y1 = int(min(hi[0] + 2, width)), int(min(hi[1] + 2, height))
        w = np.zeros(k)
        colors = np.zeros((k, 3))
        if x1 > x0 and y1 > y0 and inside.any():
            clipped = (lo[0] - 2 < 0, lo[1] - 2 < 0, hi[0] + 2 > width, hi[1] + 2 > height)
            visible, silhouette = self._zbuffer_visible(screen, pos, (x0, y0, x1, y1), eps, clipped)
            visible &= inside
            # facing
            texel_normal = _normalize(self.per_texel(normals))
            if cam is not None:
                view = np.array([0.0, 0.0, self.model.camera.distance]) - self.per_texel(cam)
                cos = (texel_normal * _normalize(view)).sum(1)
            else:
                cos = texel_normal[:, 2]
            a, b = self.facing_range
            facing = _smoothstep((cos - a) / max(b - a, 1e-6))
            # soft occlusion edges: normalised Gaussian blur of the binary visibility inside the covered texels
            sigma = max(1.0, 1.5 * s / 512)
            vis_img = self.to_image(visible.astype(np.float32))
            blurred = cv2.GaussianBlur(vis_img, (0, 0), sigma)
            norm = cv2.GaussianBlur(self.texel_mask.astype(np.float32), (0, 0), sigma)
            soft = (blurred / np.maximum(norm, 1e-6)).reshape(-1)[self.texel_index]
            w = visible * facing * silhouette * np.clip(soft, 0.0, 1.0)
            if self.photo_on_face_only:
                w = w * self.texel_takes_photo
            # photo crop (downscaled when much larger than the texture), bilinear sampling at texel positions
            crop = photo[y0:y1, x0:x1]
            factor = min(1.0, 2.0 * s / max(crop.shape[:2]))
            if factor < 1.0:
                crop = cv2.resize(crop, (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor))),
                                  interpolation=cv2.INTER_AREA)
            fx, fy = crop.shape[1] / (x1 - x0), crop.shape[0] / (y1 - y0)
            map_x = self.to_image(((pos[:, 0] - x0) * fx - 0.5).astype(np.float32), fill=-1.0)
            map_y = self.to_image(((pos[:, 1] - y0) * fy - 0.5).astype(np.float32), fill=-1.0)
            sampled = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            colors = sampled.reshape(-1, 3)[self.texel_index].astype(np.float64)

        # fallback colours
        if fallback_vertex_colors is not None:
            fallback = np.clip(self.per_texel(fallback_vertex_colors), 0.0, 1.0) * 255.0
            sel = w > 0.5
            if sel.sum() >= 50:
                gain = (w[sel, None] * colors[sel]).sum(0) / np.maximum((w[sel, None] * fallback[sel]).sum(0), 1e-6)
                fallback = np.clip(fallback * np.clip(gain, 0.5, 2.0), 0.0, 255.0)
        else:
            skin = self.texel_face_region
            if (w[skin] > 0.5).sum() >= 20:
                skin_color = (w[skin, None] * colors[skin]).sum(0) / w[skin].sum()
            else:
                skin_color = np.asarray(MEAN_SKIN_ALBEDO) * 255.0 * 0.8
            fallback = np.tile(skin_color, (k, 1))
            n_slots = int(self.texel_slot.max()) + 1
            for slot in range(n_slots):
                in_slot = self.texel_slot == slot
                if self.texel_skin[in_slot].mean() >= 0.5:
                    continue
                ws = w[in_slot]
                if (ws > 0.5).sum() >= 20:
                    fallback[in_slot] = (ws[:, None] * colors[in_slot]).sum(0) / ws.sum()

        # mirrored photo colours
        has_mirror = self.mirror_index >= 0
        mirror = np.where(has_mirror, self.mirror_index, 0)
        w_m = np.where(has_mirror, w[mirror], 0.0)
        fill = w_m[:, None] * colors[mirror] + (1.0 - w_m[:, None]) * fallback
        texel = w[:, None] * colors + (1.0 - w[:, None]) * fill

        texture = self.to_image(texel.astype(np.float32)).reshape(-1, 3)
        texture[self._uncovered] = texture[self._fill_source[self._uncovered]]
        texture = np.clip(np.round(texture), 0, 255).astype(np.uint8).reshape(s, s, 3)
        return UnwrapResult(
            texture=texture,
            visibility=self.to_image(w.astype(np.float32)),
            mirror_weight=self.to_image(((1.0 - w) * w_m).astype(np.float32)),
            uv=self.uv,
            face_uv_index=self.triangle_uv_index,
        )
