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

Modules: ``mesh`` (:class:`MeshData`, validation, seams, colours, normals, texture bytes), ``obj``, ``gltf`` (GLB),
``ply``, ``blendshapes`` (JSON); :func:`export_all` here. Rigged / animated GLB: ``msma.export_rig``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from msma.export.blendshapes import (
    ARKIT52_NAMES,
    BLENDSHAPE_SCHEMA,
    BLENDSHAPE_SCHEMA_VERSION,
    blendshapes_payload,
    euler_to_matrix,
    export_blendshapes_json,
    to_arkit52,
)
from msma.export.gltf import export_glb, to_trimesh
from msma.export.mesh import (
    TEXTURE_FORMATS,
    UNITS_M,
    MeshData,
    SeamSplit,
    _unit_m,
    sample_texture,
    split_uv_seams,
    texture_vertex_colors,
)
from msma.export.obj import export_obj, export_obj_zip
from msma.export.ply import export_ply

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
