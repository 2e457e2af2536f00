"""Mapping from mediapipe's 478-point face mesh to the 68 iBUG (300-W / dlib) landmarks.

The table is data: ``msma/data/mediapipe_to_ibug68.npz``, written by

    .venv/bin/python scripts/derive_mediapipe_ibug68.py

on the dev photos only: every face dlib's HOG detector finds in ../shared/data/faces_in_the_wild and
../shared/data/old_photos (65 faces with inter-ocular >= 20 px), labelled by dlib's 68-point predictor (the same
convention as the pseudo-labels of ../shared/data/dlib_faces, which stays held out for NME). The table therefore
mimics dlib's placement (e.g. the upper jaw points sit in front of the ear, inside the mesh's face oval).

How it is derived (details in the script):
  1. Face mesh on a 2x crop around every labelled face; for every iBUG point k and mesh vertex v (0-467) the mean
     distance |mesh_v - label_k| / inter-ocular (36-45).
  2. The mesh's left/right mirror map, measured by running the mesh on horizontally flipped photos. Each mirror pair
     of iBUG points (e.g. 36 <-> 45) gets the mirror pair of vertices with the lowest summed error, midline points
     (27-30, 33, 51, 57, 62, 66, 8) the best self-symmetric vertex, so the table is exactly symmetric.
  3. Jaw contour: iBUG jaw points lie on the visible face outline, which moves over the surface when the head turns
     (on the far side the silhouette is a cheek point, not the mesh's face-oval vertex). Each jaw point therefore has
     a short list of candidate vertices running inward from its fixed vertex along the outward contour normal (in a
     canonical frontal mesh, the Procrustes mean of the measured meshes and their mirror images), and the candidate
     projecting furthest along that normal, mapped into the photo by an affine fit of the 51 inner points, is used.
The script prints the table's own NME on its derivation faces; benchmarks/results/nme_dlib_mediapipe.* has the
held-out number. Until this file existed the table was a hand-copied array fitted on dlib_faces itself; the script
run on those faces (``--xml-dir ../shared/data/dlib_faces``) gives that table back except the right mouth corners
54 / 64 (mesh vertices 291 / 292 for 306 / 308: the measured mirror map is not an involution at the mouth corners)
and some jaw candidate lists (its canonical frame was not recorded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["MEDIAPIPE_TO_IBUG68", "IBUG68_MIRROR", "JAW_CANDIDATES", "mesh_to_68"]

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "mediapipe_to_ibug68.npz"


def _load(path: Path = TABLE_PATH) -> dict[str, np.ndarray]:
    if not path.is_file():  # only while the derivation script rebuilds it: mesh_to_68 then raises
        return {"mediapipe_to_ibug68": np.zeros(0), "ibug68_mirror": np.zeros(0), "jaw_candidates": np.zeros((0, 3)),
                "anchor_canonical": np.zeros((0, 2)), "jaw_normals": np.zeros((0, 2))}
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


_TABLE = _load()

# mesh vertex of each iBUG point (68,)
MEDIAPIPE_TO_IBUG68: np.ndarray = _TABLE["mediapipe_to_ibug68"].astype(np.int64)

# iBUG index of each point's left/right mirror partner.
IBUG68_MIRROR: np.ndarray = _TABLE["ibug68_mirror"].astype(np.int64)

# Jaw point -> candidate mesh vertices (the fixed vertex and those just inward of it along the contour normal).
JAW_CANDIDATES: dict[int, tuple[int, ...]] = {
    k: tuple(int(c) for c in row if c >= 0) for k, row in enumerate(_TABLE["jaw_candidates"]) if (row >= 0).any()
}

# Canonical frontal mesh (x right, y down, unit RMS over the anchors) positions of the 51 non-jaw table vertices.
_ANCHOR_CANONICAL: np.ndarray = _TABLE["anchor_canonical"].astype(np.float64)

# Outward contour normal of each jaw point in the canonical frame.
_JAW_NORMALS: np.ndarray = _TABLE["jaw_normals"].astype(np.float64)


def mesh_to_68(dense: np.ndarray, contour: bool = True) -> np.ndarray:
    """(478, 2) or (478, 3) face-mesh points -> (68, 2) iBUG landmarks in the same pixel frame.

    With ``contour`` the jaw points follow the visible silhouette (see module docstring); otherwise the fixed table.
    """
    if len(MEDIAPIPE_TO_IBUG68) != 68:
        raise FileNotFoundError(f"{TABLE_PATH} is missing: run scripts/derive_mediapipe_ibug68.py")
    pts = np.asarray(dense, dtype=np.float64)[:, :2]
    if pts.shape[0] < 468:
        raise ValueError(f"expected a 478- (or 468-) point face mesh, got {pts.shape[0]} points")
    out = pts[MEDIAPIPE_TO_IBUG68].copy()
    if not contour:
        return out
    anchors = pts[MEDIAPIPE_TO_IBUG68[17:]]
    design = np.c_[_ANCHOR_CANONICAL, np.ones(len(_ANCHOR_CANONICAL))]
    affine, *_ = np.linalg.lstsq(design, anchors, rcond=None)  # (3, 2): canonical -> photo
    for k, cands in JAW_CANDIDATES.items():
        direction = affine[:2].T @ _JAW_NORMALS[k]
        c = pts[list(cands)]
        out[k] = c[np.argmax(c @ direction)]
    return out
