"""Identity-shape comparison of two reconstructions with the same topology.

The second mesh is aligned onto the first by least squares (Kabsch, or Umeyama with scale) over a region,
then per-vertex distances are reported in millimetres. Model space is in decimetres, so the default
``unit_to_mm`` is 100 (pass 10 for centimetre meshes such as the raw ICT file, 1 for millimetres).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["ShapeComparison", "align_points", "distance_heatmap_figure", "identity_distance"]


@dataclass
class ShapeComparison:
    """Distances after aligning mesh B onto mesh A.

    ``per_vertex_mm`` covers every vertex; the summary statistics cover the region used for alignment
    (all vertices when no region was given).
    """

    per_vertex_mm: np.ndarray  # (N,)
    mean_mm: float
    median_mm: float
    rms_mm: float
    max_mm: float
    rotation: np.ndarray = field(repr=False)  # (3, 3) applied to B
    translation: np.ndarray = field(repr=False)  # (3,) model units
    scale: float = 1.0  # applied to B (1 for rigid alignment)
    region_vertex_indices: np.ndarray | None = field(default=None, repr=False)
    align: str = "rigid"

    def summary(self) -> dict[str, float]:
        return {"mean_mm": self.mean_mm, "median_mm": self.median_mm, "rms_mm": self.rms_mm, "max_mm": self.max_mm}


def align_points(
    target: np.ndarray, source: np.ndarray, scale: bool = False, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares (R, t, s) with ``s * source @ R.T + t ~ target`` (Kabsch; Umeyama scale when ``scale``).

    The rotation comes from ``scipy.spatial.transform.Rotation.align_vectors`` (proper rotation, no
    reflection) on the centred point sets.
    """
    target = np.asarray(target, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    if target.shape != source.shape or target.ndim != 2 or target.shape[1] != 3:
        raise ValueError(f"point sets must both be (K, 3), got {target.shape} and {source.shape}")
    if len(target) < 3:
        raise ValueError("need at least 3 points to align")
    w = np.ones(len(target)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    w = w / w.sum()
    mu_t = w @ target
    mu_s = w @ source
    ct = target - mu_t
    cs = source - mu_s
    if np.allclose(cs, 0) or np.allclose(ct, 0):
        rot = np.eye(3)
    else:
        rot = Rotation.align_vectors(ct, cs, weights=w)[0].as_matrix()
    s = 1.0
    if scale:
        denom = float(w @ np.sum(cs * cs, axis=1))
        s = float(w @ np.sum(ct * (cs @ rot.T), axis=1)) / denom if denom > 0 else 1.0
    t = mu_t - s * rot @ mu_s
    return rot, t, s


def identity_distance(
    vertices_a: np.ndarray,
    vertices_b: np.ndarray,
    region_vertex_indices: np.ndarray | None = None,
    align: str = "rigid",
    unit_to_mm: float = 100.0,
) -> ShapeComparison:
    """Per-vertex distance between two same-topology meshes after aligning B onto A over a region.

    Args:
        vertices_a, vertices_b: (N, 3) in model units (e.g. the identity-only neutral shapes of two fits).
        region_vertex_indices: vertex indices (or an (N,) bool mask) used for alignment and the statistics,
            e.g. ICT's ``narrow_face`` range; None = all vertices.
        align: ``"rigid"`` (rotation + translation), ``"similarity"`` (+ uniform scale) or ``"none"``.
        unit_to_mm: millimetres per model unit (100 for the library's decimetres).
    """
    a = np.asarray(vertices_a, dtype=np.float64)
    b = np.asarray(vertices_b, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or a.shape != b.shape:
        raise ValueError(f"vertices must both be (N, 3) with the same N, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("vertices contain NaN or inf")
    if region_vertex_indices is None:
        region = np.arange(len(a))
    else:
        region = np.asarray(region_vertex_indices)
        region = np.flatnonzero(region) if region.dtype == bool else region.astype(np.int64).reshape(-1)
        if region.size == 0 or region.min() < 0 or region.max() >= len(a):
            raise ValueError("region_vertex_indices is empty or out of range")
    if align == "none":
        rot, t, s = np.eye(3), np.zeros(3), 1.0
    elif align in ("rigid", "similarity"):
        rot, t, s = align_points(a[region], b[region], scale=align == "similarity")
    else:
        raise ValueError(f"align must be 'rigid', 'similarity' or 'none', got {align!r}")
    b_aligned = s * b @ rot.T + t
    per_vertex = np.linalg.norm(a - b_aligned, axis=1) * float(unit_to_mm)
    d = per_vertex[region]
    return ShapeComparison(
        per_vertex_mm=per_vertex,
        mean_mm=float(d.mean()),
        median_mm=float(np.median(d)),
        rms_mm=float(np.sqrt(np.mean(d * d))),
        max_mm=float(d.max()),
        rotation=rot,
        translation=t,
        scale=float(s),
        region_vertex_indices=None if region_vertex_indices is None else region,
        align=align,
    )


def distance_heatmap_figure(
    vertices: np.ndarray,
    faces: np.ndarray,
    per_vertex_mm: np.ndarray,
    title: str | None = None,
    cmax: float | None = None,
    colorscale: str = "Viridis",
):
    """Plotly ``Mesh3d`` of the mesh coloured by per-vertex distance, colour bar in mm, viewed from the front.

    ``cmax`` defaults to the 99th percentile so a few outliers do not wash out the map. The camera looks
    down -z at the face (+z towards the viewer, +y up); aspect ratio follows the data.
    """
    import plotly.graph_objects as go

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    values = np.asarray(per_vertex_mm, dtype=np.float64).reshape(-1)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(values) != len(vertices):
        raise ValueError(f"need (N, 3) vertices and (N,) distances, got {vertices.shape} and {values.shape}")
    finite = values[np.isfinite(values)]
    if cmax is None:
        cmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    cmax = max(float(cmax), 1e-6)
    mesh = go.Mesh3d(
        x=vertices[:, 0],
        y=vertices[:, 1],
        z=vertices[:, 2],
        i=faces[:, 0],
        j=faces[:, 1],
        k=faces[:, 2],
        intensity=values,
        intensitymode="vertex",
        colorscale=colorscale,
        cmin=0.0,
        cmax=cmax,
        colorbar={"title": {"text": "distance (mm)"}},
        hovertemplate="%{intensity:.2f} mm<extra></extra>",
        lighting={"ambient": 0.6, "diffuse": 0.6, "specular": 0.1, "roughness": 0.8},
        flatshading=False,
    )
    fig = go.Figure(mesh)
    axis = {"visible": False}
    fig.update_layout(
        title=title,
        margin={"l": 0, "r": 0, "t": 40 if title else 0, "b": 0},
        scene={
            "aspectmode": "data",
            "xaxis": axis,
            "yaxis": axis,
            "zaxis": axis,
            "camera": {"eye": {"x": 0.0, "y": 0.0, "z": 2.0}, "up": {"x": 0.0, "y": 1.0, "z": 0.0},
                       "center": {"x": 0.0, "y": 0.0, "z": 0.0}, "projection": {"type": "perspective"}},
        },
    )
    return fig
