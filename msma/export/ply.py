"""PLY through trimesh: one vertex per model vertex, RGB vertex colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msma.export.mesh import MeshData


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
