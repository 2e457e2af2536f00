"""Derive mediapipe's 478-point left/right mirror map: msma/data/mediapipe_mirror.npz.

    .venv/bin/python scripts/derive_landmark_mirror.py          # the committed table (a few seconds, no photos)

The face mesh is symmetric (its canonical model lists the right-side vertices as the mirror images of the left-side
ones, the 28 midline vertices map to themselves), so the map is a fixed permutation of the 478 points; it is what
flip test-time augmentation of the detector needs (`msma.landmarks.flip`). Derived from data already here, no
photos: every mesh point's surface point on the ICT mean face (`msma/data/mediapipe_to_ict.npz`) is reflected
x -> -x and
  1. matched one-to-one to the points by a symmetric assignment (Hungarian, cost |m(i) - j| + |m(j) - i|),
  2. refined with mediapipe's own tessellation (`face_mesh_connections.FACEMESH_TESSELATION`): the assignment is
     re-solved with a bonus for every mesh neighbour of i whose partner is a neighbour of j, until it stops moving.
The script checks the result: an involution, the eye / brow / iris contours of one side map exactly onto the other
side's, lips and face oval onto themselves; it prints the share of tessellation edges the map preserves (99.5 %: the
tessellation itself is not exactly symmetric in 6 of its 1,322 edges). The map agrees with the canonical model's
vertex order (left-side vertex k <-> the k-th right-side vertex) and with the measured map of
scripts/derive_mediapipe_ibug68.py except vertex 292, where that measured map is not an involution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
N_POINTS = 478


def edge_set(connections) -> set[tuple[int, int]]:
    return {tuple(sorted(edge)) for edge in connections}


def derive() -> np.ndarray:
    from mediapipe.python.solutions import face_mesh_connections as mesh

    table = np.load(ROOT / "msma" / "data" / "mediapipe_to_ict.npz")
    neutral = np.load(ROOT / "msma" / "data" / "ict_face_compact.npz")["neutral"].astype(np.float64)
    points = (neutral[table["vertices"]] * table["weights"][..., None]).sum(1)  # (478, 3) on the ICT mean face
    reflected = points * np.array([-1.0, 1.0, 1.0])
    distance = np.linalg.norm(reflected[:, None] - points[None], axis=-1)
    cost = distance + distance.T
    adjacency = np.zeros((N_POINTS, N_POINTS))
    for a, b in edge_set(mesh.FACEMESH_TESSELATION):
        adjacency[a, b] = adjacency[b, a] = 1.0
    partner = linear_sum_assignment(cost)[1]
    for _ in range(50):
        assigned = np.zeros((N_POINTS, N_POINTS))
        assigned[np.arange(N_POINTS), partner] = 1.0
        agreement = adjacency @ assigned @ adjacency  # neighbours of i whose partner neighbours j
        new = linear_sum_assignment(cost - (agreement + agreement.T))[1]
        if (new == partner).all():
            break
        partner = new
    check(partner, mesh)
    return partner


def check(partner: np.ndarray, mesh) -> None:
    if not (partner[partner] == np.arange(N_POINTS)).all():
        raise AssertionError("the mirror map is not an involution")

    def maps_onto(source, target) -> bool:
        goal = edge_set(target)
        return all(tuple(sorted((partner[a], partner[b]))) in goal for a, b in edge_set(source))

    pairs = [("LEFT_EYE", "RIGHT_EYE"), ("LEFT_EYEBROW", "RIGHT_EYEBROW"), ("LEFT_IRIS", "RIGHT_IRIS"),
             ("LIPS", "LIPS"), ("FACE_OVAL", "FACE_OVAL")]
    for left, right in pairs:
        if not maps_onto(getattr(mesh, f"FACEMESH_{left}"), getattr(mesh, f"FACEMESH_{right}")):
            raise AssertionError(f"FACEMESH_{left} does not map onto FACEMESH_{right}")
    edges = edge_set(mesh.FACEMESH_TESSELATION)
    kept = np.mean([tuple(sorted((partner[a], partner[b]))) in edges for a, b in edges])
    print(f"involution, contours map onto their mirror contours; {kept:.1%} of {len(edges)} tessellation edges "
          f"preserved; {(partner == np.arange(N_POINTS)).sum()} midline points")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "msma" / "data" / "mediapipe_mirror.npz"))
    args = parser.parse_args()
    partner = derive()
    np.savez(args.out, mirror=partner.astype(np.int64), source=np.array("scripts/derive_landmark_mirror.py"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
