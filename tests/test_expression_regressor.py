"""The learnt mesh-point expression regressor: its features, mirror maps, shipped file and its use in the fitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import msma.fit as fit_module
from msma.expression_regressor import REGRESSOR_PATH, ExpressionRegressor, expression_mirror, mesh_features, mirror_mesh
from msma.face_model import Coefficients, FaceModel
from msma.fit import LandmarkFitSettings, fit_landmarks, regressed_expressions


def _mesh(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(40, 180, (1, 478, 2)), rng.normal(0, 10, (1, 478))


def test_expression_mirror_swaps_left_and_right(ict: FaceModel) -> None:
    """The weight permutation of a mirror image swaps every _L/_R pair and jawLeft/jawRight, keeps jawOpen, and is
    its own inverse."""
    names = ict.expression_names
    mirror = expression_mirror(names)
    assert names[mirror[names.index("browDown_L")]] == "browDown_R"
    assert names[mirror[names.index("jawLeft")]] == "jawRight"
    assert names[mirror[names.index("mouthRight")]] == "mouthLeft"
    assert mirror[names.index("jawOpen")] == names.index("jawOpen")
    np.testing.assert_array_equal(mirror[mirror], np.arange(len(names)))
    np.testing.assert_array_equal(expression_mirror(), mirror)  # the file's order is the model's


def test_mesh_features_ignore_crop_position_size_and_roll() -> None:
    """Translating, scaling and rotating the points in the image plane (depth scaled alike) leaves the features as
    they are; a change of the face's own shape does not."""
    dense, depth = _mesh()
    angle, scale, shift = 0.3, 1.7, np.array([25.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = dense @ rot.T * scale + shift
    np.testing.assert_allclose(mesh_features(moved, depth * scale + 5.0), mesh_features(dense, depth), atol=1e-4)
    changed = dense.copy()
    changed[0, 13] += 8.0
    assert np.abs(mesh_features(changed, depth) - mesh_features(dense, depth)).max() > 1e-2


def test_mirror_mesh_twice_is_the_identity() -> None:
    dense, depth = _mesh(1)
    again = mirror_mesh(*mirror_mesh(dense, depth))
    np.testing.assert_allclose(again[0], dense)
    np.testing.assert_allclose(again[1], depth)


@pytest.mark.skipif(not REGRESSOR_PATH.is_file(), reason="msma/data/expression_regressor.npz is not built")
def test_shipped_regressor_loads_and_answers_weights() -> None:
    """The shipped file loads, says how it was measured, and maps one face's points to 53 weights in [0, 1] that do
    not depend on where the face is in the crop."""
    reg = ExpressionRegressor.load()
    assert {"regressor_mae", "neutral_mae", "held_out_renders"} <= set(reg.report)
    dense, depth = _mesh(2)
    weights = reg.predict(dense[0], depth[0])
    assert weights.shape == (53,) and weights.min() >= 0.0 and weights.max() <= 1.0
    np.testing.assert_allclose(reg.predict(dense[0] + 30.0, depth[0]), weights, atol=1e-5)


class _FixedRegressor:
    """Stands in for the learnt network: always answers the same weights."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights

    def predict(self, dense: np.ndarray, depth: np.ndarray) -> np.ndarray:
        return self.weights


def test_fitter_centres_expressions_on_the_regressor(ict: FaceModel, monkeypatch) -> None:
    """With `expression_regressor_prior` set, the last round's expressions are pulled to the regressor's answer
    (a strong prior returns it, a dead zone zeroes its small weights); without mesh depth, or with the option off
    (the default), the fit is unchanged."""
    jaw, smile = ict.expression_names.index("jawOpen"), ict.expression_names.index("mouthSmile_L")
    answer = np.zeros(ict.n_expression)
    answer[jaw], answer[smile] = 0.5, 0.05
    monkeypatch.setattr(fit_module, "_expression_regressor", lambda path=None: _FixedRegressor(answer))
    truth = Coefficients.zeros(ict, 1)
    target = ict.project_landmarks(truth)
    mesh = np.concatenate([np.random.default_rng(0).uniform(40, 180, (1, 478, 2)), np.zeros((1, 478, 1))], axis=2)
    strong = LandmarkFitSettings(detector_bias=False, use_dense=True, expression_regressor_prior=1e6,
                                 expression_regressor_dead_zone=0.1)
    regressed = regressed_expressions(ict, mesh, strong)
    assert regressed[0, jaw] == 0.5 and regressed[0, smile] == 0.0
    # the mesh table's rows would also pull the fit; give the mesh points no weight so only the prior differs
    mesh_nan = mesh.copy()
    strong_no_mesh_rows = LandmarkFitSettings(detector_bias=False, expression_regressor_prior=1e6,
                                              expression_regressor_dead_zone=0.1, dense_sigma_scale=1e6)
    fitted = fit_landmarks(ict, target, settings=strong_no_mesh_rows, dense=mesh_nan)
    assert abs(fitted.expression[0, jaw].item() - 0.5) < 0.02 and fitted.expression[0, smile].item() < 0.02
    default = LandmarkFitSettings(detector_bias=False, dense_sigma_scale=1e6)
    assert default.expression_regressor_prior is None
    plain = fit_landmarks(ict, target, settings=default, dense=mesh_nan)
    assert plain.expression[0, jaw].item() < 0.05
    no_depth = mesh_nan.copy()
    no_depth[..., 2] = np.nan
    assert regressed_expressions(ict, no_depth, strong) is None
    without = fit_landmarks(ict, target, settings=strong_no_mesh_rows, dense=no_depth)
    torch.testing.assert_close(without.expression, plain.expression)


def test_adaptive_l1_releases_only_what_the_regressor_sees(ict: FaceModel, monkeypatch) -> None:
    """`expression_regressor_l1_release`: a 0.6 jaw opening that a strong L1 damps comes back when the regressor
    reports it (its L1 is released), and a blendshape the regressor does not report stays at zero."""
    jaw = ict.expression_names.index("jawOpen")
    answer = np.zeros(ict.n_expression)
    answer[jaw] = 0.6
    monkeypatch.setattr(fit_module, "_expression_regressor", lambda path=None: _FixedRegressor(answer))
    truth = Coefficients.zeros(ict, 1)
    truth.expression[0, jaw] = 0.6
    target = ict.project_landmarks(truth)
    mesh = np.concatenate([np.random.default_rng(0).uniform(40, 180, (1, 478, 2)), np.zeros((1, 478, 1))], axis=2)
    strong = dict(expression_prior=64.0, expression_l1=512.0, detector_bias=False, dense_sigma_scale=1e6)
    lasso = fit_landmarks(ict, target, settings=LandmarkFitSettings(**strong), dense=mesh)
    released = fit_landmarks(ict, target, dense=mesh,
                             settings=LandmarkFitSettings(**strong, expression_regressor_l1_release=0.5))
    assert released.expression[0, jaw] > lasso.expression[0, jaw] + 0.1
    others = np.delete(np.arange(ict.n_expression), jaw)
    assert released.expression[0, others].max() <= lasso.expression[0, others].max() + 0.05


def test_regressor_limited_to_named_blendshapes(ict: FaceModel, monkeypatch) -> None:
    """`expression_regressor_blendshapes`: the regressor's weights of the other blendshapes count as 0 (NaN rows of
    images without a mesh stay NaN), an unknown name is an error, and the shipped file's clearest blendshapes are
    the ones its report correlates best (jawOpen among them, the brows not)."""
    from msma.expression_regressor import clearest_blendshapes

    jaw, smile = ict.expression_names.index("jawOpen"), ict.expression_names.index("mouthSmile_L")
    answer = np.zeros(ict.n_expression)
    answer[jaw], answer[smile] = 0.5, 0.7
    monkeypatch.setattr(fit_module, "_expression_regressor", lambda path=None: _FixedRegressor(answer))
    mesh = np.concatenate([np.random.default_rng(0).uniform(40, 180, (2, 478, 2)), np.zeros((2, 478, 1))], axis=2)
    mesh[1] = np.nan
    only_jaw = LandmarkFitSettings(expression_regressor_prior=64.0, expression_regressor_blendshapes=("jawOpen",))
    regressed = regressed_expressions(ict, mesh, only_jaw)
    assert regressed[0, jaw] == 0.5 and regressed[0, smile] == 0.0 and np.isnan(regressed[1]).all()
    every = regressed_expressions(ict, mesh, LandmarkFitSettings(expression_regressor_prior=64.0))
    assert every[0, smile] == 0.7
    with pytest.raises(ValueError, match="not blendshapes"):
        regressed_expressions(ict, mesh, LandmarkFitSettings(expression_regressor_prior=64.0,
                                                             expression_regressor_blendshapes=("jawOpn",)))
    clearest = clearest_blendshapes(0.5)
    correlation = ExpressionRegressor.load().report["correlation"]
    assert "jawOpen" in clearest and "browInnerUp_L" not in clearest
    assert all(correlation[name] >= 0.5 for name in clearest)
    assert set(clearest) == {name for name, c in correlation.items() if c >= 0.5}
