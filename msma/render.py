"""Differentiable triangle rasteriser (deferred shading, nvdiffrast style).

Conventions
-----------
* Screen vertices are ``(B, N, 3)`` tensors ``[x_pix, y_pix, depth]``: x to the right, y down, in pixels of the
  output image; ``depth`` is positive and smaller is nearer (``depth = distance - z`` with the MSMA camera).
* Pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``; its **centre is at ``(j + 0.5, i + 0.5)``**. So the
  principal point ``(112, 112)`` of the 224 x 224 crop is the exact image centre, and continuous coordinates match
  ``msma.align`` / landmark pixel coordinates.
* Triangles are front facing when counter-clockwise as seen by the viewer (OBJ / OpenGL convention), i.e. clockwise
  in the y-down screen frame (negative signed area there). Back faces are only culled when ``cull_backfaces=True``.
* Triangles with any vertex at ``depth <= near`` are dropped (no near-plane clipping).

How it works
------------
1. Visibility (not differentiable): triangles that are degenerate, off-screen, behind the near plane (or back facing
   when culling) are dropped; each remaining triangle is split into the pixel rows of its bounding box, the span of
   covered pixel centres on each row is solved from the edge functions, and the covered (triangle, pixel) pairs are
   enumerated exactly (``repeat_interleave``, in chunks, all batch items at once). A z-buffer is built with one
   ``scatter_reduce(amin)`` on an int64 key ``(float32 depth bits << 32) | face``, which selects the nearest triangle
   (ties: lowest face index) in a single pass. No Python loop over triangles or pixels. With the ``pytorch3d``
   backend this step is done by ``pytorch3d.renderer.mesh.rasterize_meshes`` instead.
2. Barycentrics (differentiable): for each covered pixel the barycentrics of its centre w.r.t. the winning triangle's
   screen vertices are recomputed with autograd-tracked torch ops, so gradients flow to vertex positions, to vertex
   attributes / textures, and to anything shading them (albedo, lighting). ``perspective_correct=True`` (default)
   corrects them with the per-vertex depth, like nvdiffrast / pytorch3d with a perspective camera.

   ``Fragments.depth`` is the perspective-correct depth ``1 / sum(b_i / depth_i)`` (with screen-space ``b``), the same
   depth the z-buffer compares, whatever ``perspective_correct`` says.

Backends: ``"auto"`` uses pytorch3d for CUDA tensors when it is importable (its CPU rasteriser is brute force) and the
pure-torch rasteriser otherwise; both share step 2, so only the choice of the covering triangle can differ (edge ties).

Limitations: gradients exist only inside covered pixels (no silhouette / visibility gradients, no anti-aliasing); one
triangle per pixel (no transparency); no near-plane clipping.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Fragments", "RenderOutput", "Renderer", "composite", "pytorch3d_available"]

_BACKGROUND_KEY = torch.iinfo(torch.int64).max
_EDGE_TOL = 1e-4  # px: pixel centres this close to an edge count as covered


@functools.cache
def pytorch3d_available() -> bool:
    """True when ``pytorch3d.renderer.mesh.rasterize_meshes`` can be imported."""
    try:
        from pytorch3d.renderer.mesh import rasterize_meshes  # noqa: F401
        from pytorch3d.structures import Meshes  # noqa: F401
    except Exception:  # ImportError, or a broken binary build
        return False
    return True


@dataclass
class Fragments:
    """Per-pixel rasterisation result (nearest triangle only)."""

    face_index: torch.Tensor  # (B, H, W) long, -1 = background
    bary: torch.Tensor  # (B, H, W, 3) differentiable w.r.t. screen vertices; 0 on background
    depth: torch.Tensor  # (B, H, W) interpolated depth (differentiable); 0 on background
    mask: torch.Tensor  # (B, H, W) bool, True where a triangle covers the pixel centre


@dataclass
class RenderOutput:
    image: torch.Tensor  # (B, H, W, C) float, background composited
    mask: torch.Tensor  # (B, H, W) bool
    depth: torch.Tensor  # (B, H, W) 0 on background
    fragments: Fragments | None = None


BackgroundLike = torch.Tensor | float | tuple[float, ...] | None


class Renderer:
    """Rasterise screen-space triangle meshes and interpolate / shade attributes.

    Args:
        image_size: ``S`` for ``S x S`` or ``(H, W)``.
        backend: ``"auto"`` (pytorch3d for CUDA tensors when importable, the pure-torch rasteriser otherwise; the
            pytorch3d CPU rasteriser is brute force and much slower than the pure-torch one), ``"torch"`` or
            ``"pytorch3d"``.
        perspective_correct: perspective-correct barycentrics (uses the depth of the screen vertices).
        cull_backfaces: drop triangles facing away from the viewer (see module docstring for the winding).
        near: triangles with a vertex at ``depth <= near`` are dropped.
        chunk_size: covered (triangle, pixel) pairs processed at once by the pure-torch backend (bounds memory).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        backend: str = "auto",
        *,
        perspective_correct: bool = True,
        cull_backfaces: bool = False,
        near: float = 1e-3,
        chunk_size: int = 1 << 18,
    ) -> None:
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        height, width = (int(s) for s in image_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if backend not in ("auto", "torch", "pytorch3d"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'pytorch3d', got {backend!r}")
        if backend == "pytorch3d" and not pytorch3d_available():
            raise ImportError("backend='pytorch3d' requested but pytorch3d is not importable")
        self.image_size: tuple[int, int] = (height, width)
        self.backend = backend
        self.perspective_correct = perspective_correct
        self.cull_backfaces = cull_backfaces
        self.near = float(near)
        self.chunk_size = int(chunk_size)
        self._p3d = backend == "pytorch3d" or (backend == "auto" and pytorch3d_available())

    def __repr__(self) -> str:
        return (
            f"Renderer(image_size={self.image_size}, backend={self.backend!r}, "
            f"perspective_correct={self.perspective_correct}, cull_backfaces={self.cull_backfaces})"
        )

    def backend_for(self, device: torch.device) -> str:
        """The backend actually used for tensors on ``device``."""
        if self.backend == "auto":
            return "pytorch3d" if (self._p3d and device.type == "cuda") else "torch"
        return self.backend

    # ------------------------------------------------------------------ rasterisation
    def rasterize(self, screen_vertices: torch.Tensor, faces: torch.Tensor) -> Fragments:
        """Nearest-triangle fragments for screen vertices ``(B, N, 3)`` (or ``(N, 3)``) and faces ``(F, 3)``."""
        verts, faces = _check_mesh(screen_vertices, faces)
        with torch.no_grad():
            x, y, z = _corner_coords(verts, faces)
            valid = _valid_faces(x, y, z, self.near, self.cull_backfaces)
            if self.backend_for(verts.device) == "pytorch3d":
                face_index = _visibility_pytorch3d(verts.detach(), faces, valid, self.image_size)
            else:
                face_index = _visibility_torch(x, y, z, valid, self.image_size, self.chunk_size)
        return _fragments_from_face_index(verts, faces, face_index, self.perspective_correct)

    def fragments_from_face_index(
        self, screen_vertices: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor
    ) -> Fragments:
        """Differentiable fragments for a visibility map computed earlier (``rasterize(...).face_index``).

        Iterative fitting re-rasterises only every few steps: which triangle covers a pixel changes slowly, while
        barycentrics and depth are recomputed from the current vertices here every step.
        """
        verts, faces = _check_mesh(screen_vertices, faces)
        return _fragments_from_face_index(verts, faces, face_index, self.perspective_correct)

    # ------------------------------------------------------------------ shading helpers
    @staticmethod
    def interpolate(fragments: Fragments, vertex_attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Interpolate ``(B, N, C)`` (or ``(N, C)``) vertex attributes -> ``(B, H, W, C)``, zero on background.

        ``faces`` indexes ``vertex_attributes`` (it may differ from the geometry faces, e.g. UV faces), one row per
        geometry face.
        """
        face_index, bary = fragments.face_index, fragments.bary
        b, h, w = face_index.shape
        attrs = vertex_attributes
        if attrs.dim() == 2:
            attrs = attrs.unsqueeze(0)
        if attrs.dim() != 3 or attrs.shape[0] not in (1, b):
            raise ValueError(f"vertex_attributes must be (B, N, C) or (N, C), got {tuple(vertex_attributes.shape)}")
        channels = attrs.shape[-1]
        faces = faces.to(device=face_index.device, dtype=torch.long)
        flat_face = face_index.reshape(-1)
        pix = torch.nonzero(flat_face >= 0).squeeze(1)
        out = attrs.new_zeros(b * h * w, channels)
        if pix.numel() == 0:
            return out.reshape(b, h, w, channels)
        corner = faces.index_select(0, flat_face.index_select(0, pix))  # (P, 3)
        if attrs.shape[0] > 1:  # rows of the flattened (B * N, C) attributes
            corner = corner + (torch.div(pix, h * w, rounding_mode="floor") * attrs.shape[1]).unsqueeze(1)
        values = attrs.reshape(-1, channels).index_select(0, corner.reshape(-1)).view(-1, 3, channels)
        weights = bary.reshape(-1, 3).index_select(0, pix).to(values.dtype)
        out = out.index_put((pix,), torch.bmm(weights.unsqueeze(1), values).squeeze(1))
        return out.reshape(b, h, w, channels)

    def render_colors(
        self,
        screen_vertices: torch.Tensor,
        faces: torch.Tensor,
        vertex_colors: torch.Tensor,
        background: BackgroundLike = None,
        fragments: Fragments | None = None,
    ) -> RenderOutput:
        """Render per-vertex colours ``(B, N, C)`` (or ``(N, C)``); see :func:`composite` for ``background``."""
        if fragments is None:
            fragments = self.rasterize(screen_vertices, faces)
        image = self.interpolate(fragments, vertex_colors, faces)
        image = composite(image, fragments.mask, background)
        return RenderOutput(image=image, mask=fragments.mask, depth=fragments.depth, fragments=fragments)

    def render_texture(
        self,
        screen_vertices: torch.Tensor,
        faces: torch.Tensor,
        uv: torch.Tensor,
        face_uv_index: torch.Tensor,
        texture: torch.Tensor,
        background: BackgroundLike = None,
        fragments: Fragments | None = None,
    ) -> RenderOutput:
        """Render a UV-mapped texture.

        Args:
            uv: ``(T, 2)`` (or ``(B, T, 2)``) in ``[0, 1]``, v up as in OBJ: ``(0, 0)`` is the bottom-left corner of
                the texture image, ``(1, 1)`` the top-right corner; texel ``(r, c)`` centre is
                ``((c + 0.5) / Wt, 1 - (r + 0.5) / Ht)``.
            face_uv_index: ``(F, 3)`` rows of ``uv`` for each geometry face.
            texture: ``(B, Ht, Wt, C)`` or ``(Ht, Wt, C)`` float; sampled bilinearly (``grid_sample``, border padding).
        """
        if fragments is None:
            fragments = self.rasterize(screen_vertices, faces)
        b, h, w = fragments.mask.shape
        if texture.dim() == 3:
            texture = texture.unsqueeze(0)
        if texture.dim() != 4 or texture.shape[0] not in (1, b):
            raise ValueError(f"texture must be (B, Ht, Wt, C) or (Ht, Wt, C), got {tuple(texture.shape)}")
        texture = texture.expand(b, -1, -1, -1)
        pixel_uv = self.interpolate(fragments, uv.to(texture.dtype), face_uv_index)  # (B, H, W, 2)
        grid = torch.stack((pixel_uv[..., 0] * 2 - 1, 1 - pixel_uv[..., 1] * 2), dim=-1)
        sampled = F.grid_sample(
            texture.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        background = 0.0 if background is None else background  # uncovered pixels sampled uv (0, 0): mask them
        image = composite(sampled.permute(0, 2, 3, 1), fragments.mask, background)
        return RenderOutput(image=image, mask=fragments.mask, depth=fragments.depth, fragments=fragments)


def composite(image: torch.Tensor, mask: torch.Tensor, background: BackgroundLike = None) -> torch.Tensor:
    """Put ``image`` (B, H, W, C) over ``background`` where ``mask``.

    ``background``: ``None`` (zeros), a scalar or per-channel tuple, or an image ``(B, H, W, C)`` / ``(H, W, C)``
    (float, same range as ``image``; gradients flow to it on background pixels).
    """
    if background is None:
        return image  # interpolate already leaves zeros on background
    if not torch.is_tensor(background):
        background = torch.as_tensor(background, dtype=image.dtype, device=image.device)
    background = background.to(device=image.device, dtype=image.dtype)
    if background.dim() == 1 and background.shape[0] == image.shape[-1]:
        background = background.view(1, 1, 1, -1)
    elif background.dim() == 3:
        background = background.unsqueeze(0)
    return torch.where(mask.unsqueeze(-1), image, background.expand_as(image))


# ---------------------------------------------------------------------- internals
def _check_mesh(screen_vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    verts = screen_vertices
    if verts.dim() == 2:
        verts = verts.unsqueeze(0)
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"screen_vertices must be (B, N, 3) [x_pix, y_pix, depth], got {tuple(verts.shape)}")
    if not verts.is_floating_point():
        verts = verts.float()
    faces = torch.as_tensor(faces, device=verts.device)
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    faces = faces.long()
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[1]):
        raise ValueError("faces index vertices out of range")
    return verts, faces


def _corner_coords(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-corner x, y, depth of every triangle, each ``(B, F, 3)`` float32 (no autograd)."""
    batch, n_verts, _ = verts.shape
    flat = faces.reshape(-1)
    coords = verts.detach().float().transpose(1, 2)  # (B, 3, N)
    return tuple(coords[:, k].index_select(1, flat).view(batch, -1, 3) for k in range(3))


def _valid_faces(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, near: float, cull_backfaces: bool) -> torch.Tensor:
    """(B, F) bool: non-degenerate, in front of the near plane, finite and (optionally) front facing."""
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)  # negative = CCW as seen by the viewer
    valid = (z.amin(-1) > near) & torch.isfinite(area2) & torch.isfinite(z).all(-1)
    valid &= (area2 < 0) if cull_backfaces else (area2 != 0)
    return valid


def _visibility_torch(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, valid: torch.Tensor, image_size: tuple[int, int], chunk_size: int
) -> torch.Tensor:
    """Nearest face per pixel, ``(B, H, W)`` long with -1 for background. No autograd.

    Scanline enumeration: each triangle is split into its pixel rows (inside its clipped bounding box); on each
    (triangle, row) pair the span of covered pixel centres is solved from the edge functions, and only covered
    (triangle, pixel) pairs are generated, in chunks of about ``chunk_size``. Pixel centres within ``_EDGE_TOL`` px of
    an edge count as inside (so shared edges never crack; the z-buffer picks one triangle).
    """
    height, width = image_size
    batch, n_faces = valid.shape
    device = x.device
    empty = torch.full((batch, height, width), -1, dtype=torch.long, device=device)
    if n_faces == 0:
        return empty

    # Pixel-centre bounding boxes: centres c = j + 0.5 with min <= c <= max, clipped to the image.
    x_lo = torch.ceil(x.amin(-1) - 0.5).clamp_min_(0)
    y_lo = torch.ceil(y.amin(-1) - 0.5).clamp_min_(0)
    x_hi = torch.floor(x.amax(-1) - 0.5).clamp_max_(width - 1)
    y_hi = torch.floor(y.amax(-1) - 0.5).clamp_max_(height - 1)
    valid = valid & (x_hi >= x_lo) & (y_hi >= y_lo)
    sel = torch.nonzero(valid.reshape(-1)).squeeze(1)  # indices into B * F
    if sel.numel() == 0:
        return empty
    x_lo, y_lo = x_lo.reshape(-1).index_select(0, sel), y_lo.reshape(-1).index_select(0, sel)
    n_x = x_hi.reshape(-1).index_select(0, sel) - x_lo + 1
    n_y = (y_hi.reshape(-1).index_select(0, sel) - y_lo + 1).long()
    # Corner coordinates relative to the bounding-box origin pixel centre (float32 precision for small triangles).
    px = x.reshape(-1, 3).index_select(0, sel) - (x_lo + 0.5).unsqueeze(1)  # (T, 3)
    py = y.reshape(-1, 3).index_select(0, sel) - (y_lo + 0.5).unsqueeze(1)
    inv_z = z.reshape(-1, 3).index_select(0, sel).reciprocal()
    face_id = sel % n_faces
    base = torch.div(sel, n_faces, rounding_mode="floor") * (height * width) + (y_lo * width + x_lo).long()

    # b_i(dx, dy) = edge(v_{i+1}, v_{i+2}, p) / area2 = cx_i dx + cy_i dy + c0_i, with
    # edge(a, b, p) = (b.x - a.x) (p.y - a.y) - (b.y - a.y) (p.x - a.x).
    ax, ay, bx, by = px.roll(-1, 1), py.roll(-1, 1), px.roll(-2, 1), py.roll(-2, 1)
    area2 = (px[:, 1] - px[:, 0]) * (py[:, 2] - py[:, 0]) - (px[:, 2] - px[:, 0]) * (py[:, 1] - py[:, 0])
    inv_area2 = area2.reciprocal().unsqueeze(1)
    cx = (ay - by) * inv_area2  # (T, 3)
    cy = (bx - ax) * inv_area2
    c0 = ((by - ay) * ax - (bx - ax) * ay) * inv_area2
    # 1/depth is affine in screen space too.
    zx, zy, z0 = (cx * inv_z).sum(1), (cy * inv_z).sum(1), (c0 * inv_z).sum(1)
    # On a row dy, b_i >= 0 <=> dx >= (or <=, by the sign of cx_i) -(cy_i dy + c0_i) / cx_i: a lower (upper) bound
    # line in dy per edge, widened by the tolerance (measured perpendicular to the edge). Horizontal edges (cx_i = 0)
    # bound rows only, which the bounding box already does.
    ratio = cx.reciprocal()
    slope, icpt = -cy * ratio, -c0 * ratio
    shift = _EDGE_TOL * torch.hypot(cx, cy) * ratio.abs()
    is_lo, is_hi = cx > 0, cx < 0
    inf = torch.full_like(icpt, float("inf"))
    zero = torch.zeros_like(slope)
    table = torch.cat(
        (
            torch.where(is_lo, slope, zero),
            torch.where(is_lo, icpt - shift, -inf),
            torch.where(is_hi, slope, zero),
            torch.where(is_hi, icpt + shift, inf),
            (n_x - 1).unsqueeze(1),
        ),
        1,
    )  # (T, 13)
    ztab = torch.stack((zx, zy, z0), 1)  # (T, 3)
    ids = torch.stack((base, face_id), 1)  # (T, 2) int64

    # (triangle, row) pairs.
    n_rows = int(n_y.sum())
    r_tri = torch.repeat_interleave(torch.arange(sel.numel(), device=device), n_y, output_size=n_rows)
    r_dy = torch.arange(n_rows, device=device) - (torch.cumsum(n_y, 0) - n_y).index_select(0, r_tri)
    rt = table.index_select(0, r_tri)
    dyf = r_dy.float().unsqueeze(1)
    left = torch.ceil((rt[:, 0:3] * dyf + rt[:, 3:6]).amax(1)).clamp_min_(0)
    right = torch.minimum(torch.floor((rt[:, 6:9] * dyf + rt[:, 9:12]).amin(1)), rt[:, 12])
    count = (right - left + 1).clamp_min_(0).long()
    keep = torch.nonzero(count).squeeze(1)
    if keep.numel() == 0:
        return empty
    count, left, r_dy = count.index_select(0, keep), left.index_select(0, keep), r_dy.index_select(0, keep)
    r_tri = r_tri.index_select(0, keep)
    r_ids = ids.index_select(0, r_tri)
    rz = ztab.index_select(0, r_tri)
    # Per-row: first pixel (flat index), face id, 1/depth at the first pixel and its step along x.
    r_int = torch.stack((r_ids[:, 0] + r_dy * width + left.long(), r_ids[:, 1]), 1)
    r_flt = torch.stack((rz[:, 0] * left + rz[:, 1] * r_dy.float() + rz[:, 2], rz[:, 0]), 1)

    keybuf = torch.full((batch * height * width,), _BACKGROUND_KEY, dtype=torch.int64, device=device)
    ends = torch.cumsum(count, 0)
    starts = ends - count
    total = int(ends[-1])
    n_chunks = max(1, -(-total // max(1, chunk_size)))
    cuts = torch.searchsorted(ends, torch.arange(1, n_chunks, device=device) * chunk_size).add(1).tolist()
    edges = sorted({0, *cuts, keep.numel()})
    for s, e in zip(edges[:-1], edges[1:]):  # a few chunks, not a loop over triangles
        if e <= s:
            continue
        n_pix = int(ends[e - 1] - starts[s])
        row = torch.repeat_interleave(torch.arange(s, e, device=device), count[s:e], output_size=n_pix)
        dx = torch.arange(n_pix, device=device) + (starts[s] - starts.index_select(0, row))
        ri = r_int.index_select(0, row)
        rf = r_flt.index_select(0, row)
        depth = torch.addcmul(rf[:, 0], rf[:, 1], dx.float()).clamp_min_(1e-30).reciprocal_()
        key = (depth.view(torch.int32).to(torch.int64) << 32) | ri[:, 1]
        keybuf.scatter_reduce_(0, ri[:, 0] + dx, key, reduce="amin", include_self=True)

    face_index = torch.where(keybuf == _BACKGROUND_KEY, -1, keybuf & 0xFFFFFFFF)
    return face_index.reshape(batch, height, width)


def _visibility_pytorch3d(
    verts: torch.Tensor, faces: torch.Tensor, valid: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """Nearest face per pixel with ``pytorch3d.renderer.mesh.rasterize_meshes`` (visibility only)."""
    from pytorch3d.renderer.mesh import rasterize_meshes
    from pytorch3d.structures import Meshes

    height, width = image_size
    batch, n_faces = valid.shape
    if n_faces == 0:
        return torch.full((batch, height, width), -1, dtype=torch.long, device=verts.device)
    # Screen (x right, y down, pixel centres at +0.5) -> pytorch3d NDC (+x left, +y up; the shorter side spans
    # [-1, 1], pixel centre j at 1 - (2 j + 1) / S for a square image). z stays the positive view depth.
    s = float(min(height, width))
    ndc = torch.stack(
        ((width - 2.0 * verts[..., 0]) / s, (height - 2.0 * verts[..., 1]) / s, verts[..., 2]), dim=-1
    ).float()
    # Invalid (culled / behind the near plane) faces become degenerate (0, 0, 0) triangles, which pytorch3d skips, so
    # face indices are unchanged.
    faces_b = torch.where(valid.unsqueeze(-1), faces.unsqueeze(0), torch.zeros_like(faces).unsqueeze(0))
    meshes = Meshes(verts=ndc, faces=faces_b)
    pix_to_face, _, _, _ = rasterize_meshes(
        meshes,
        image_size=(height, width),
        blur_radius=0.0,
        faces_per_pixel=1,
        perspective_correct=True,  # depth test on the true (perspective) depth, as the torch backend
        cull_backfaces=False,
    )
    pix_to_face = pix_to_face[..., 0].long()  # packed index b * F + f
    return torch.where(pix_to_face >= 0, pix_to_face % n_faces, pix_to_face.new_full((), -1))


def _fragments_from_face_index(
    verts: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor, perspective_correct: bool
) -> Fragments:
    """Differentiable barycentrics and depth of pixel centres w.r.t. their (given) winning triangles."""
    batch, height, width = face_index.shape
    flat_face = face_index.reshape(-1)
    pix = torch.nonzero(flat_face >= 0).squeeze(1)
    bary = verts.new_zeros(batch * height * width, 3)
    depth = verts.new_zeros(batch * height * width)
    if pix.numel():
        b = torch.div(pix, height * width, rounding_mode="floor")
        rem = pix - b * (height * width)
        py = torch.div(rem, width, rounding_mode="floor")
        px = rem - py * width
        n_verts = verts.shape[1]
        corner = faces.index_select(0, flat_face.index_select(0, pix)) + (b * n_verts).unsqueeze(1)  # (P, 3)
        tri = verts.reshape(-1, 3).index_select(0, corner.reshape(-1)).view(-1, 3, 3)  # differentiable
        # Relative to the pixel centre (precision): p = (0, 0).
        x = tri[..., 0] - (px.to(verts.dtype) + 0.5).unsqueeze(1)
        y = tri[..., 1] - (py.to(verts.dtype) + 0.5).unsqueeze(1)
        # w_i = edge(v_{i+1}, v_{i+2}, p) with p at the origin = x_{i+1} y_{i+2} - x_{i+2} y_{i+1}
        w = torch.stack(
            (
                x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1],
                x[:, 2] * y[:, 0] - x[:, 0] * y[:, 2],
                x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0],
            ),
            -1,
        )
        area2 = w.sum(-1, keepdim=True)  # twice the signed area; guard triangles degenerate since visibility
        area2 = torch.where(area2.abs() > 1e-20, area2, torch.full_like(area2, 1e-20))
        screen_bary = w / area2
        weighted = screen_bary / tri[..., 2]
        inv_depth = weighted.sum(-1, keepdim=True)
        pix_bary = weighted / inv_depth if perspective_correct else screen_bary
        bary = bary.index_put((pix,), pix_bary)
        depth = depth.index_put((pix,), 1.0 / inv_depth.squeeze(-1))
    return Fragments(
        face_index=face_index,
        bary=bary.reshape(batch, height, width, 3),
        depth=depth.reshape(batch, height, width),
        mask=face_index >= 0,
    )
