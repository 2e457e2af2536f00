"""OBJ + MTL + texture, written directly: one ``v`` per model vertex in model order with per-corner ``vt`` indices,
so the file stays in correspondence with the morphable model. (trimesh's OBJ writer would split vertices at UV
seams, as glTF must, and lose that correspondence.)"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from msma.export.mesh import MeshData, _image_bytes, _texture_format


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


def _format_rows(prefix: str, array: np.ndarray, fmt: str) -> str:
    """Text block with one "prefix a b c" line per row (%-formatting of tolist() rows: ~5x faster than savetxt)."""
    if len(array) == 0:
        return ""
    row_fmt = prefix + " " + " ".join([fmt] * array.shape[1])
    return "\n".join(row_fmt % tuple(row) for row in array.tolist()) + "\n"
