from __future__ import annotations

import numpy as np
import pytest

from msma.landmarks import MEDIAPIPE_TO_IBUG68, FaceLandmarks, NoFaceError, five_points_from_68, mesh_to_68
from msma.landmarks.mapping import _ANCHOR_CANONICAL, _JAW_NORMALS, IBUG68_MIRROR, JAW_CANDIDATES


def test_table_sanity():
    assert MEDIAPIPE_TO_IBUG68.shape == (68,)
    assert len(set(MEDIAPIPE_TO_IBUG68.tolist())) == 68
    assert MEDIAPIPE_TO_IBUG68.min() >= 0 and MEDIAPIPE_TO_IBUG68.max() < 478
    assert (IBUG68_MIRROR[IBUG68_MIRROR] == np.arange(68)).all()
    assert _ANCHOR_CANONICAL.shape == (51, 2) and _JAW_NORMALS.shape == (17, 2)
    for k, cands in JAW_CANDIDATES.items():
        assert 0 <= k < 17 and k != 8
        assert MEDIAPIPE_TO_IBUG68[k] in cands and all(0 <= c < 478 for c in cands)


def test_canonical_anchors_are_mirror_symmetric():
    # anchors are the table vertices of points 17..67; mirror pairs must have mirrored canonical x
    a = _ANCHOR_CANONICAL
    mirror = IBUG68_MIRROR[17:] - 17
    # the measured mesh mirror map is not exactly an involution for a few vertices, hence the tolerance
    np.testing.assert_allclose(a[mirror, 0], -a[:, 0], atol=0.02)
    np.testing.assert_allclose(a[mirror, 1], a[:, 1], atol=0.02)


def test_mesh_to_68_picks_table_vertices():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(478, 2)) * 50 + 200
    lm = mesh_to_68(dense, contour=False)
    np.testing.assert_array_equal(lm, dense[MEDIAPIPE_TO_IBUG68])
    lm_c = mesh_to_68(dense)
    assert lm_c.shape == (68, 2)
    np.testing.assert_array_equal(lm_c[17:], lm[17:])  # the contour search moves jaw points only
    with pytest.raises(ValueError):
        mesh_to_68(np.zeros((68, 2)))


@pytest.mark.parametrize("contour", [False, True])
def test_mesh_to_68_follows_similarity_transform(contour):
    """Rotating, scaling and moving the mesh moves its 68 points the same way (the jaw contour choice included)."""
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(478, 2)) * 50 + 200
    a, s, t = np.radians(25.0), 1.7, np.array([-40.0, 65.0])
    rotation = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = mesh_to_68(dense @ rotation.T + t, contour=contour)
    np.testing.assert_allclose(moved, mesh_to_68(dense, contour=contour) @ rotation.T + t, atol=1e-9)


def test_five_points_and_errors():
    lm = np.zeros((68, 2))
    lm[36:42] = [10, 20]
    lm[42:48] = [30, 20]
    lm[30] = [20, 30]
    lm[48] = [12, 40]
    lm[54] = [28, 40]
    face = FaceLandmarks(np.array([0, 0, 40, 50.0]), lm, 0.9, "dlib")
    np.testing.assert_allclose(face.five_points(), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    np.testing.assert_allclose(five_points_from_68(lm), face.five_points())
    assert issubclass(NoFaceError, ValueError)
    with pytest.raises(ValueError):
        five_points_from_68(np.zeros((5, 2)))


def test_table_file_is_symmetric_and_not_derived_on_evaluation_faces():
    from msma.landmarks.mapping import TABLE_PATH

    with np.load(TABLE_PATH) as d:
        mesh_mirror, source = d["mesh_mirror"], str(d["source"])
    # exactly symmetric under the mesh's measured mirror map: the partner of point k sits on the mirror of k's vertex
    np.testing.assert_array_equal(MEDIAPIPE_TO_IBUG68[IBUG68_MIRROR], mesh_mirror[MEDIAPIPE_TO_IBUG68])
    assert "dlib_faces" not in source  # held out for NME (benchmarks/results/nme_dlib_mediapipe.*)
    assert "faces_in_the_wild" in source


def test_symmetric_table_assignment():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "derive_mediapipe_ibug68.py"
    spec = importlib.util.spec_from_file_location("derive_mediapipe_ibug68", path)
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    rng = np.random.default_rng(2)
    n = 200
    mirror = np.arange(n)
    pairs = rng.permutation(n)[:160].reshape(80, 2)  # 80 mirror pairs, 40 self-symmetric vertices
    mirror[pairs[:, 0]], mirror[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    # a ground-truth table symmetric by construction: point k on truth[k], its partner on mirror[truth[k]]
    table = np.full(68, -1)
    pair_iter, self_iter = iter(pairs[:, 0]), iter(np.flatnonzero(mirror == np.arange(n)))
    for k in range(68):
        kk = derive.IBUG68_MIRROR[k]
        if table[k] >= 0:
            continue
        v = next(self_iter) if kk == k else next(pair_iter)
        table[k], table[kk] = v, mirror[v]
    err = rng.uniform(0.5, 1.0, size=(68, n))
    err[np.arange(68), table] = 0.01
    got = derive.symmetric_table(err, mirror)
    np.testing.assert_array_equal(got, table)
    np.testing.assert_array_equal(got[derive.IBUG68_MIRROR], mirror[got])
