"""Export a reconstructed face: OBJ+MTL+PNG, GLB, PLY and an ARKit blendshape/pose JSON.

Everything here works on plain numpy arrays, so any morphable model (ICT, BFM09, ...) can be exported.

Conventions
-----------
* Geometry is +y up, +z towards the viewer (out of the face), triangles counter-clockwise seen from outside
  (outward normals, as in the ICT and BFM meshes). Winding and vertex order are written unchanged.
* UVs follow the OBJ convention: u to the right, v up, (0, 0) is the bottom-left corner of the texture image;
  ``texture`` is an ordinary image array whose row 0 is the top. GLB export flips v as glTF requires (trimesh).
* UVs are indexed per triangle corner (``face_uv_index``), separately from vertex indices, exactly as in OBJ.

Unit rule
---------
``MeshData.unit_m`` says how long one model unit is in metres. It defaults to 0.1 because the library's model
space is in decimetres (1 unit = 100 mm); pass 0.01 for a mesh in centimetres (the raw ICT file). Every mesh
export (GLB, OBJ, PLY) writes **metres** by default -- the glTF convention, and what Blender, three.js and
MeshLab assume -- and takes ``unit="m" | "dm" | "cm" | "mm"`` to write another unit.

Vertex order
------------
OBJ and PLY keep exactly one vertex per model vertex in the model's order, so the files stay in
correspondence with the morphable model (blendshapes, landmarks, region indices). GLB cannot index UVs
separately, so textured GLB vertices are split at UV seams (one glTF vertex per unique (vertex, uv) pair);
use ``split_uv_seams`` to get the mapping back to model vertices.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ARKIT52_NAMES",
    "BLENDSHAPE_SCHEMA",
    "BLENDSHAPE_SCHEMA_VERSION",
    "EXPORT_FORMATS",
    "TEXTURE_FORMATS",
    "UNITS_M",
    "MeshData",
    "SeamSplit",
    "euler_to_matrix",
    "export_all",
    "export_blendshapes_json",
    "export_glb",
    "export_obj",
    "export_obj_zip",
    "export_ply",
    "blendshapes_payload",
    "sample_texture",
    "split_uv_seams",
    "texture_vertex_colors",
    "to_trimesh",
    "to_arkit52",
]

UNITS_M: dict[str, float] = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001}
"""Length of each supported export unit in metres."""

BLENDSHAPE_SCHEMA = "msma.blendshapes"
BLENDSHAPE_SCHEMA_VERSION = "1.0"

# Apple ARKit ARFaceAnchor.BlendShapeLocation names (52), in Apple's documentation order.
ARKIT52_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip

_DEFAULT_GREY = np.array([180, 180, 180], dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------------
# mesh container
# --------------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------------------------
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


def _format_rows(prefix: str, array: np.ndarray, fmt: str) -> str:
    """Text block with one "prefix a b c" line per row (%-formatting of tolist() rows: ~5x faster than savetxt)."""
    if len(array) == 0:
        return ""
    row_fmt = prefix + " " + " ".join([fmt] * array.shape[1])
    return "\n".join(row_fmt % tuple(row) for row in array.tolist()) + "\n"


# --------------------------------------------------------------------------------------------------------------
# OBJ
# --------------------------------------------------------------------------------------------------------------
def _obj_files(mesh: MeshData, stem: str, unit: str, texture_format: str = "png") -> dict[str, bytes]:
    """Build the OBJ, MTL and PNG file contents, keyed by file name."""
    vertices = mesh.scaled_vertices(unit)
    textured = mesh.has_texture
    colors = None if textured else mesh.vertex_colors
    ext = _texture_format(texture_format)[0]
    lines = [f"# MSMA face mesh; units: {unit}; +y up, +z forward; {len(vertices)} vertices, {len(mesh.faces)} faces"]
    files: dict[str, bytes] = {}
    if textured:
        lines.append(f"mtllib {stem}.mtl")
    text = "\n".join(lines) + "\n"
    if colors is not None:  # de-facto "v x y z r g b" extension (MeshLab, Blender, trimesh)
        block = np.concatenate([vertices, colors.astype(np.float64) / 255.0], axis=1)
        text += _format_rows("v", block, "%.6g")
    else:
        text += _format_rows("v", vertices, "%.6g")
    if textured:
        text += _format_rows("vt", mesh.uv, "%.6f")
        text += f"usemtl {mesh.name}\ns 1\n"
        corners = np.stack([mesh.faces + 1, mesh.face_uv_index + 1], axis=2).reshape(len(mesh.faces), 6)
        text += _faces_with_uv(corners)
        mtl = (
            f"# MSMA material\nnewmtl {mesh.name}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\n"
            f"Ks 0.000 0.000 0.000\nNs 10.0\nd 1.0\nillum 1\nmap_Kd {stem}.{ext}\n"
        )
        files[f"{stem}.mtl"] = mtl.encode()
        files[f"{stem}.{ext}"] = _image_bytes(mesh.texture, texture_format)
    else:
        text += "s 1\n" + _format_rows("f", mesh.faces + 1, "%d")
    files[f"{stem}.obj"] = text.encode()
    return files


def _faces_with_uv(corners: np.ndarray) -> str:
    return "\n".join(f"f {a}/{b} {c}/{d} {e}/{g}" for a, b, c, d, e, g in corners.tolist()) + "\n"


def export_obj(mesh: MeshData, path: str | Path, unit: str = "m", texture_format: str = "png") -> list[Path]:
    """Write ``path`` (.obj), plus ``<stem>.mtl`` and ``<stem>.png`` (or .jpg) beside it when textured.

    One ``v`` per model vertex (model order kept), per-corner ``vt``; untextured meshes with vertex colours
    write them as ``v x y z r g b``. Returns the written paths, OBJ first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = _obj_files(mesh, path.stem, unit, texture_format)
    written = []
    for name in sorted(files, key=lambda n: not n.endswith(".obj")):
        target = path if name.endswith(".obj") else path.with_name(name)
        target.write_bytes(files[name])
        written.append(target)
    return written


def export_obj_zip(
    mesh: MeshData, zip_path: str | Path, unit: str = "m", stem: str | None = None, texture_format: str = "png"
) -> Path:
    """The OBJ + MTL + PNG bundle in one zip (for a single download); files named ``stem`` (default: the
    zip's stem). Returns ``zip_path``."""
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    files = _obj_files(mesh, stem or zip_path.stem, unit, texture_format)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, data in files.items():
            # PNG is already compressed; deflating it again only costs time
            kind = zipfile.ZIP_STORED if name.endswith((".png", ".jpg")) else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=kind, compresslevel=6 if kind == zipfile.ZIP_DEFLATED else None)
    return zip_path


# --------------------------------------------------------------------------------------------------------------
# GLB
# --------------------------------------------------------------------------------------------------------------
def to_trimesh(mesh: MeshData, unit: str = "m", texture_image=None):
    """A ``trimesh.Trimesh`` for the mesh: textured (split at UV seams) or with vertex colours.

    Smooth normals are computed on the unsplit mesh and carried over, so seams do not show as creases.
    ``texture_image`` overrides the PIL image put in the material (used by :func:`export_glb`).
    """
    import trimesh
    from PIL import Image

    vertices = mesh.scaled_vertices(unit)
    normals = _vertex_normals(vertices, mesh.faces)
    if mesh.has_texture:
        split = split_uv_seams(mesh.faces, mesh.face_uv_index)
        material = trimesh.visual.material.PBRMaterial(
            name=mesh.name,
            baseColorTexture=Image.fromarray(mesh.texture) if texture_image is None else texture_image,
            baseColorFactor=[255, 255, 255, 255],
            metallicFactor=0.0,
            roughnessFactor=0.8,
        )
        visual = trimesh.visual.TextureVisuals(uv=mesh.uv[split.uv_index], material=material)
        return trimesh.Trimesh(
            vertices=vertices[split.vertex_index],
            faces=split.faces,
            vertex_normals=normals[split.vertex_index],
            visual=visual,
            process=False,
        )
    colors = mesh.vertex_colors
    result = trimesh.Trimesh(vertices=vertices, faces=mesh.faces, vertex_normals=normals, process=False)
    if colors is not None:
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
        result.visual = trimesh.visual.ColorVisuals(result, vertex_colors=rgba)
    return result


def export_glb(mesh: MeshData, path: str | Path, unit: str = "m", texture_format: str = "png") -> Path:
    """Binary glTF (metres by default): textured PBR material, else vertex colours (COLOR_0), with normals.

    The texture is embedded as PNG (``texture_format="jpeg"`` for a ~10x smaller file). trimesh would
    re-encode it at PNG level 6 (~0.4 s for 1024 px); instead it gets a 1 px stand-in and the real,
    fast-encoded image bytes are swapped in through trimesh's ``buffer_postprocessor`` hook.
    """
    import trimesh
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, mime = _texture_format(texture_format)
    stand_in = Image.new("RGB", (1, 1), (1, 2, 3)) if mesh.has_texture else None
    tm = to_trimesh(mesh, unit, texture_image=stand_in)
    scene = trimesh.Scene()
    scene.add_geometry(tm, node_name=mesh.name, geom_name=mesh.name)

    def swap_texture(buffer_items, tree) -> None:
        images = tree.get("images") or []
        if not mesh.has_texture or len(images) != 1:
            return
        keys = list(buffer_items.keys())
        data = _image_bytes(mesh.texture, texture_format)
        buffer_items[keys[images[0]["bufferView"]]] = data + b"\x00" * (-len(data) % 4)
        images[0]["mimeType"] = mime

    data = trimesh.exchange.gltf.export_glb(scene, include_normals=True, buffer_postprocessor=swap_texture)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------------------
# PLY
# --------------------------------------------------------------------------------------------------------------
def export_ply(mesh: MeshData, path: str | Path, unit: str = "m", binary: bool = True) -> Path:
    """PLY with one vertex per model vertex and RGB vertex colours.

    Colours are ``mesh.vertex_colors``, else the texture sampled at each vertex's UVs (averaged over seams),
    else none.
    """
    import trimesh

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colors = mesh.colors_for_vertices()
    tm = trimesh.Trimesh(vertices=mesh.scaled_vertices(unit), faces=mesh.faces, process=False)
    if colors is not None:
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
        tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=rgba)
    data = trimesh.exchange.ply.export_ply(tm, encoding="binary_little_endian" if binary else "ascii")
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------------------
# blendshapes + pose JSON
# --------------------------------------------------------------------------------------------------------------
def euler_to_matrix(angles: Sequence[float]) -> np.ndarray:
    """(pitch, yaw, roll) radians -> 3x3 numpy rotation: `msma.face_model.euler_to_matrix` (the one definition)."""
    import torch

    from msma.face_model import euler_to_matrix as euler_to_matrix_batched

    return euler_to_matrix_batched(torch.tensor([[float(a) for a in angles]], dtype=torch.float64))[0].numpy()


def _weights_dict(weights) -> dict[str, float]:
    if isinstance(weights, Mapping):
        names, values = list(weights.keys()), list(weights.values())
    else:
        if len(weights) != 2:
            raise TypeError("weights must be a dict name -> value or a (names, values) pair")
        names, values = list(weights[0]), np.asarray(weights[1], dtype=np.float64).reshape(-1).tolist()
    if len(names) != len(values):
        raise ValueError(f"{len(names)} blendshape names but {len(values)} values")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("duplicate blendshape names")
    out = {}
    for name, value in zip(names, values):
        value = float(np.asarray(value, dtype=np.float64).reshape(()))
        out[name] = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
    return out


def to_arkit52(weights: Mapping[str, float]) -> dict[str, float]:
    """Map ICT-style names (``eyeBlink_L``, ``browInnerUp_L``/``_R``, ...) to Apple's 52 ARKit names.

    ``X_L``/``X_R`` become ``XLeft``/``XRight``; ARKit's single ``browInnerUp`` and ``cheekPuff`` take the
    mean of the left/right pair; names already in ARKit spelling pass through; missing ones (e.g.
    ``tongueOut`` for ICT) are 0.
    """
    mapped: dict[str, list[float]] = {}
    for name, value in weights.items():
        if name.endswith("_L"):
            key = name[:-2] + "Left"
        elif name.endswith("_R"):
            key = name[:-2] + "Right"
        else:
            key = name
        if key not in ARKIT52_NAMES:
            base = key.removesuffix("Left").removesuffix("Right")
            key = base if base in ARKIT52_NAMES else key
        mapped.setdefault(key, []).append(float(value))
    return {name: float(np.clip(np.mean(mapped[name]), 0, 1)) if name in mapped else 0.0 for name in ARKIT52_NAMES}


def blendshapes_payload(weights, pose=None, translation=None, unit_m: float = 0.1) -> dict:
    """The JSON document written by :func:`export_blendshapes_json` (see there)."""
    blendshapes = _weights_dict(weights)
    angles = np.zeros(3)
    trans = np.zeros(3)
    if pose is not None:
        if isinstance(pose, Mapping):
            angles = np.asarray(pose.get("angles", np.zeros(3)), dtype=np.float64).reshape(3)
            trans = np.asarray(pose.get("translation", np.zeros(3)), dtype=np.float64).reshape(3)
        elif isinstance(pose, (tuple, list)) and len(pose) == 2 and np.size(pose[0]) == 3:
            angles = np.asarray(pose[0], dtype=np.float64).reshape(3)  # (angles, translation | None)
            if pose[1] is not None:
                trans = np.asarray(pose[1], dtype=np.float64).reshape(3)
        else:
            pose = np.asarray(pose, dtype=np.float64).reshape(-1)
            if pose.size not in (3, 6):
                raise ValueError("pose must be (pitch, yaw, roll) or (pitch, yaw, roll, tx, ty, tz)")
            angles = pose[:3]
            if pose.size == 6:
                trans = pose[3:]
    if translation is not None:
        trans = np.asarray(translation, dtype=np.float64).reshape(3)
    if not (np.all(np.isfinite(angles)) and np.all(np.isfinite(trans))):
        raise ValueError("pose contains NaN or inf")
    names = ("pitch", "yaw", "roll")
    return {
        "schema": BLENDSHAPE_SCHEMA,
        "schema_version": BLENDSHAPE_SCHEMA_VERSION,
        "blendshape_count": len(blendshapes),
        "blendshapes": blendshapes,
        "arkit52": to_arkit52(blendshapes),
        "head_pose": {
            "convention": "R = Rz(roll) @ Ry(yaw) @ Rx(pitch); v_camera = R @ v_model + translation; "
            "+y up, +z towards the camera",
            "radians": {k: float(a) for k, a in zip(names, angles)},
            "degrees": {k: float(np.degrees(a)) for k, a in zip(names, angles)},
            "rotation_matrix": euler_to_matrix(angles).tolist(),
            "translation_model_units": trans.tolist(),
            "translation_m": (trans * unit_m).tolist(),
            "model_unit_m": unit_m,
        },
    }


def export_blendshapes_json(
    weights: Mapping[str, float] | tuple[Sequence[str], Sequence[float]],
    pose=None,
    path: str | Path = "blendshapes.json",
    translation: Sequence[float] | None = None,
    unit_m: float = 0.1,
) -> Path:
    """Write blendshape weights and head pose as JSON.

    Args:
        weights: dict name -> weight, or (names, values); every name is written, in order, clipped to [0, 1]
            (NaN -> 0). ICT's 53 ARKit-named shapes are also mapped to Apple's 52 names under ``"arkit52"``.
        pose: (pitch, yaw, roll) radians; or those followed by (tx, ty, tz); or an (angles, translation) pair;
            or a dict with ``angles`` and ``translation``; None = identity.
        path: output file.
        translation: (3,) model units; overrides one given in ``pose``.
        unit_m: metres per model unit, for ``translation_m``.

    Fields: ``schema``, ``schema_version``, ``blendshape_count``, ``blendshapes``, ``arkit52``, ``head_pose``
    (``radians``, ``degrees``, ``rotation_matrix`` row-major, ``translation_model_units``, ``translation_m``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = blendshapes_payload(weights, pose, translation, unit_m)
    path.write_text(json.dumps(payload, indent=2))
    return path


# --------------------------------------------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------------------------------------------
EXPORT_FORMATS = ("glb", "obj", "obj.zip", "ply", "json")


def export_all(
    mesh: MeshData,
    out_dir: str | Path,
    stem: str = "face",
    formats: Sequence[str] = ("glb", "obj", "ply", "json"),
    blendshapes=None,
    pose=None,
    unit: str = "m",
    texture_format: str = "png",
    rig=None,
) -> dict[str, Path]:
    """Export to several formats in ``out_dir``; returns {format: path} (plus ``"mtl"``/``"texture"`` for OBJ).

    Formats: ``glb``, ``obj``, ``obj.zip`` (alias ``zip``), ``ply``, ``json`` (needs ``blendshapes``; skipped
    with no weights). With ``rig`` (an `msma.export_rig.Rig`) the GLB is the rigged face (morph targets) instead
    of the static ``mesh``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _unit_m(unit)
    results: dict[str, Path] = {}
    for fmt in formats:
        fmt = fmt.lower().lstrip(".")
        if fmt == "glb" and rig is not None:
            from msma.export_rig import export_rigged_glb

            results["glb"] = export_rigged_glb(rig, out_dir / f"{stem}.glb", unit, texture_format)
        elif fmt == "glb":
            results["glb"] = export_glb(mesh, out_dir / f"{stem}.glb", unit, texture_format)
        elif fmt == "obj":
            for written in export_obj(mesh, out_dir / f"{stem}.obj", unit, texture_format):
                key = written.suffix.lstrip(".")
                results["texture" if key in ("png", "jpg") else key] = written
        elif fmt in ("obj.zip", "zip"):
            results["obj.zip"] = export_obj_zip(mesh, out_dir / f"{stem}_obj.zip", unit, stem, texture_format)
        elif fmt == "ply":
            results["ply"] = export_ply(mesh, out_dir / f"{stem}.ply", unit)
        elif fmt == "json":
            if blendshapes is None:
                continue
            results["json"] = export_blendshapes_json(blendshapes, pose, out_dir / f"{stem}_blendshapes.json",
                                                      unit_m=mesh.unit_m)
        else:
            raise ValueError(f"unknown export format {fmt!r}; use {EXPORT_FORMATS}")
    return results
