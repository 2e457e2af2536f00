"""The mesh every export format writes: :class:`MeshData` (validated on construction), and what the formats share:
UV seam splitting, texture sampling and vertex colours, smooth normals, texture image bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

UNITS_M: dict[str, float] = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001}
"""Length of each supported export unit in metres."""

_DEFAULT_GREY = np.array([180, 180, 180], dtype=np.uint8)


@dataclass
class MeshData:
    """A triangle mesh with optional per-corner UVs, texture and vertex colours (see module docstring).

    Attributes:
        vertices: (N, 3) float, model units (``unit_m`` metres each).
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside.
        uv: (T, 2) float texture coordinates (OBJ convention, v up) or None.
        face_uv_index: (F, 3) int indices into ``uv`` per triangle corner, or None. When ``uv`` is given with
            T == N and no ``face_uv_index``, ``faces`` is used (per-vertex UVs).
        texture: (H, W, 3) uint8 RGB image or None.
        vertex_colors: (N, 3) uint8, or float in [0, 1], or None.
        unit_m: length of one model unit in metres (0.1 = the library's decimetres).
        name: used for material / node names inside the files.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    face_uv_index: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    unit_m: float = 0.1
    name: str = "face"

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (N, 3), got {self.vertices.shape}")
        if not np.all(np.isfinite(self.vertices)):
            raise ValueError("vertices contain NaN or inf")
        self.faces = _as_index(self.faces, "faces", len(self.vertices))
        n = len(self.vertices)
        if self.uv is not None:
            self.uv = np.asarray(self.uv, dtype=np.float64)
            if self.uv.ndim != 2 or self.uv.shape[1] != 2:
                raise ValueError(f"uv must be (T, 2), got {self.uv.shape}")
            if self.face_uv_index is None:
                if len(self.uv) != n:
                    raise ValueError("face_uv_index is required when uv is not per-vertex (T != N)")
                self.face_uv_index = self.faces.copy()
            self.face_uv_index = _as_index(self.face_uv_index, "face_uv_index", len(self.uv))
            if self.face_uv_index.shape != self.faces.shape:
                raise ValueError(f"face_uv_index {self.face_uv_index.shape} must match faces {self.faces.shape}")
        elif self.face_uv_index is not None:
            raise ValueError("face_uv_index given without uv")
        if self.texture is not None:
            self.texture = _as_rgb_image(self.texture)
            if self.uv is None:
                raise ValueError("a texture needs uv and face_uv_index")
        if self.vertex_colors is not None:
            self.vertex_colors = _as_rgb_colors(self.vertex_colors, n)
        self.name = "_".join(str(self.name).split()) or "face"  # OBJ/MTL names cannot hold spaces
        if not (np.isfinite(self.unit_m) and self.unit_m > 0):
            raise ValueError(f"unit_m must be a positive length in metres, got {self.unit_m}")

    @property
    def has_texture(self) -> bool:
        return self.texture is not None and self.uv is not None

    def scaled_vertices(self, unit: str = "m") -> np.ndarray:
        """Vertices converted from model units to ``unit`` (one of ``UNITS_M``)."""
        return self.vertices * (self.unit_m / _unit_m(unit))

    def colors_for_vertices(self) -> np.ndarray | None:
        """(N, 3) uint8 vertex colours: the given ones, else the texture averaged over each vertex's corners."""
        if self.vertex_colors is not None:
            return self.vertex_colors
        if self.has_texture:
            return texture_vertex_colors(len(self.vertices), self.faces, self.uv, self.face_uv_index, self.texture)
        return None


@dataclass
class SeamSplit:
    """Result of :func:`split_uv_seams`: one new vertex per unique (vertex, uv) pair."""

    vertex_index: np.ndarray  # (M,) model vertex of each new vertex
    uv_index: np.ndarray  # (M,) uv row of each new vertex
    faces: np.ndarray  # (F, 3) faces indexing the new vertices


def _unit_m(unit: str) -> float:
    try:
        return UNITS_M[unit]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; use one of {sorted(UNITS_M)}") from None


def _as_index(array, name: str, upper: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must be (F, 3), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold integer indices")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= upper):
        raise ValueError(f"{name} indices out of range [0, {upper})")
    return array


def _as_rgb_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"texture must be (H, W, 3) RGB, got {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max(initial=0) <= 1.0:
            image = image * 255.0
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _as_rgb_colors(colors, n: int) -> np.ndarray:
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[0] != n or colors.shape[1] not in (3, 4):
        raise ValueError(f"vertex_colors must be ({n}, 3), got {colors.shape}")
    colors = colors[:, :3]
    if colors.dtype == np.uint8:
        return np.ascontiguousarray(colors)
    is_float = np.issubdtype(colors.dtype, np.floating)
    colors = colors.astype(np.float64)
    if is_float and colors.max(initial=0) <= 1.0:
        colors = colors * 255.0
    return np.clip(np.round(colors), 0, 255).astype(np.uint8)


def split_uv_seams(faces: np.ndarray, face_uv_index: np.ndarray) -> SeamSplit:
    """Make one vertex per unique (vertex, uv) corner pair, as needed by glTF and most GPU formats.

    New vertices are sorted by (vertex, uv), so the result is deterministic and roughly keeps model order.
    """
    faces = np.asarray(faces, dtype=np.int64)
    face_uv_index = np.asarray(face_uv_index, dtype=np.int64)
    n_uv = int(face_uv_index.max(initial=-1)) + 1
    keys = faces.reshape(-1) * max(n_uv, 1) + face_uv_index.reshape(-1)
    unique, inverse = np.unique(keys, return_inverse=True)
    return SeamSplit(
        vertex_index=unique // max(n_uv, 1),
        uv_index=unique % max(n_uv, 1),
        faces=inverse.reshape(faces.shape),
    )


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinearly sample an (H, W, 3) uint8 texture at (K, 2) OBJ-convention UVs (v up).

    Coordinates inside [0, 1] are clamped to the edge pixels; ones outside wrap (repeat), like a GL_REPEAT
    sampler, so 1.0 stays the right / top edge.
    """
    texture = _as_rgb_image(texture)
    h, w = texture.shape[:2]
    uv = np.asarray(uv, dtype=np.float64)
    uv = np.where((uv < 0.0) | (uv > 1.0), np.mod(uv, 1.0), uv)
    # pixel centres: u = 0 -> left edge of column 0, v = 0 -> bottom edge of the last row
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0i = np.clip(x0.astype(np.int64), 0, w - 1)
    y0i = np.clip(y0.astype(np.int64), 0, h - 1)
    x1i = np.clip(x0i + 1, 0, w - 1)
    y1i = np.clip(y0i + 1, 0, h - 1)
    tex = texture.astype(np.float32)
    top = tex[y0i, x0i] * (1 - fx) + tex[y0i, x1i] * fx
    bottom = tex[y1i, x0i] * (1 - fx) + tex[y1i, x1i] * fx
    return np.clip(np.round(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def texture_vertex_colors(
    n_vertices: int, faces: np.ndarray, uv: np.ndarray, face_uv_index: np.ndarray, texture: np.ndarray
) -> np.ndarray:
    """(N, 3) uint8 per-vertex colours: the texture sampled at every corner UV of a vertex, averaged.

    Vertices used by no triangle get a neutral grey.
    """
    corner_colors = sample_texture(texture, np.asarray(uv)[np.asarray(face_uv_index).reshape(-1)]).astype(np.float64)
    vertex = np.asarray(faces, dtype=np.int64).reshape(-1)
    counts = np.bincount(vertex, minlength=n_vertices).astype(np.float64)
    sums = np.stack([np.bincount(vertex, weights=corner_colors[:, c], minlength=n_vertices) for c in range(3)], 1)
    colors = np.tile(_DEFAULT_GREY.astype(np.float64), (n_vertices, 1))
    used = counts > 0
    colors[used] = sums[used] / counts[used, None]
    return np.clip(np.round(colors), 0, 255).astype(np.uint8)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals on the unsplit mesh (so GLB normals are smooth across UV seams)."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    normals = np.zeros_like(vertices)
    for c in range(3):
        np.add.at(normals, faces[:, c], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    fallback = np.array([0.0, 0.0, 1.0])
    return np.where(length > 1e-20, normals / np.maximum(length, 1e-20), fallback)


TEXTURE_FORMATS = {"png": ("png", "image/png"), "jpeg": ("jpg", "image/jpeg"), "jpg": ("jpg", "image/jpeg")}


def _texture_format(texture_format: str) -> tuple[str, str]:
    """(file extension, mime type) for ``"png"`` (lossless, default) or ``"jpeg"`` (10x smaller)."""
    try:
        return TEXTURE_FORMATS[texture_format.lower()]
    except KeyError:
        raise ValueError(f"texture_format must be 'png' or 'jpeg', got {texture_format!r}") from None


def _image_bytes(image: np.ndarray, texture_format: str = "png") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if _texture_format(texture_format)[0] == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)  # level 6 is 4x slower for -15 %
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()
