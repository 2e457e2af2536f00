"""Per-frame maths of the video tracker, on exact model projections (no video, no detector)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msma.face_model import Coefficients
from msma.track import EyeModel, FrameFitter, FrameState, PointSet, TrackSettings, _hold, box_qp, gaze_to_eye_look


@pytest.fixture(scope="module")
def identity(ict):
    return np.random.default_rng(3).normal(0, 0.8, ict.n_identity)


def project(ict, identity, weights, angles, translation=(0.0, 0.0, 0.0)):
    c = Coefficients.zeros(ict, 1)
    c.identity = torch.as_tensor(identity, dtype=torch.float32)[None]
    c.expression = torch.as_tensor(weights, dtype=torch.float32)[None]
    c.angles = torch.as_tensor(angles, dtype=torch.float32)[None]
    c.translation = torch.as_tensor(translation, dtype=torch.float32)[None]
    with torch.no_grad():
        return ict.project_landmarks(c)[0].numpy().astype(np.float64)


@pytest.fixture(scope="module")
def mesh(ict):
    points = PointSet.mesh(ict)
    assert points is not None and points.dense and len(points.sigma_px) == 468
    return points


def project_points(ict, points, identity, weights, angles, translation=(0.0, 0.0, 0.0)):
    """Exact crop-pixel projections of a `PointSet`'s surface points through the model's camera."""
    from msma.face_model import euler_to_matrix

    verts = (points.mean + np.tensordot(identity, points.identity_basis, axes=1)
             + np.tensordot(weights, points.expression_basis, axes=1))
    rotation = euler_to_matrix(torch.as_tensor(np.asarray(angles)[None]))[0].numpy()
    cam = torch.as_tensor(verts @ rotation.T + np.asarray(translation))[None]
    return ict.camera.project(cam)[0, :, :2].numpy()


def test_box_qp_matches_scipy():
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 12))
    b = rng.normal(size=40)
    lo, hi = np.zeros(12), np.ones(12)
    x = box_qp(a.T @ a, a.T @ b, lo, hi, start=rng.uniform(0, 1, 12))
    ref = lsq_linear(a, b, bounds=(lo, hi)).x
    assert np.allclose(x, ref, atol=1e-6)


def test_frame_fitter_recovers_pose_and_expression(ict, identity, mesh):
    names = ict.expression_names
    weights = np.zeros(ict.n_expression)
    weights[names.index("jawOpen")] = 0.6
    weights[names.index("mouthSmile_L")] = 0.5
    weights[names.index("mouthSmile_R")] = 0.5
    weights[names.index("eyeBlink_R")] = 0.8
    angles = np.radians([8.0, -20.0, 5.0])
    target = project_points(ict, mesh, identity, weights, angles, (0.1, -0.2, 0.5))
    settings = TrackSettings(fit_iterations=3, expression_prior=1.0, expression_l1=0.0, symmetry_prior=0.0)
    fitter = FrameFitter(ict, identity, settings)
    assert fitter.points.name == "mesh468"  # the default: mediapipe's mesh points on the ICT surface
    state = fitter.fit(target)
    assert np.degrees(np.abs(state.angles - angles)).max() < 1.0
    assert state.residual_px < 0.3
    for name in ("jawOpen", "mouthSmile_L"):
        assert state.weights[names.index(name)] == pytest.approx(weights[names.index(name)], abs=0.1)
    # six eyelid points leave blink / squint / look-down partly interchangeable
    assert state.weights[names.index("eyeBlink_R")] > 0.5 > state.weights[names.index("eyeBlink_L")]
    assert np.abs(state.weights - weights).mean() < 0.03
    # warm start from the previous frame: a second fit changes nothing
    again = fitter.fit(target, state)
    assert np.abs(again.weights - state.weights).max() < 0.02


def test_gaze_from_iris_pixels(ict, identity):
    eyes = EyeModel.from_model(ict, identity)
    assert eyes is not None and eyes.centres[0, 0] > 0 > eyes.centres[1, 0]
    fitter = FrameFitter(ict, identity)
    state = FrameState(np.radians([5.0, 15.0, 0.0]), np.zeros(3), np.zeros(ict.n_expression))
    rotation = __import__("msma.export", fromlist=["euler_to_matrix"]).euler_to_matrix(state.angles)
    want = np.radians([[12.0, -6.0], [12.0, -6.0]])  # both eyes: towards the face's left and down
    iris = []
    for e in range(2):
        yaw, pitch = want[e]
        direction = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
        yaw, pitch = yaw + eyes.rest[e, 0], pitch + eyes.rest[e, 1]  # gaze is relative to the rest axis
        direction = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
        point = rotation @ (eyes.centres[e] + eyes.radius[e] * direction)
        iris.append(fitter.project(point[None], np.zeros(3), np.zeros(3))[0])
    got = eyes.gaze(fitter, state, np.array(iris))
    assert np.degrees(np.abs(got - want)).max() < 0.5


def test_gaze_to_eye_look_sides():
    look = gaze_to_eye_look(np.radians([[15.0, 10.0], [15.0, 10.0]]))
    assert look["eyeLookOut_L"] == pytest.approx(0.5) and look["eyeLookIn_L"] == 0.0
    assert look["eyeLookIn_R"] == pytest.approx(0.5) and look["eyeLookOut_R"] == 0.0
    assert look["eyeLookUp_L"] == pytest.approx(0.4) and look["eyeLookDown_R"] == 0.0
    # a dead zone of 5 degrees: small rotations read 0, full rotations still 1, in between linear
    look = gaze_to_eye_look(np.radians([[15.0, 4.0], [-30.0, -25.0]]), deadzone_deg=5.0)
    assert look["eyeLookOut_L"] == pytest.approx(0.4) and look["eyeLookUp_L"] == 0.0
    assert look["eyeLookOut_R"] == pytest.approx(1.0) and look["eyeLookDown_R"] == pytest.approx(1.0)


def test_hold_fills_gaps_with_nearest_tracked_values():
    values = np.arange(6, dtype=float)[:, None]
    valid = np.array([False, True, True, False, False, True])
    _hold(values, valid)
    assert values[:, 0].tolist() == [1, 1, 2, 2, 2, 5]


def test_fit_identity_shares_one_face_over_keyframes(ict, identity):
    from msma.track import fit_identity

    names = ict.expression_names
    poses = [np.radians(a) for a in ([0, 0, 0], [5, 15, 0], [-5, -15, 3])]
    targets, truth = [], []
    for k, angles in enumerate(poses):
        w = np.zeros(ict.n_expression)
        w[names.index("jawOpen")] = 0.3 * k
        targets.append(project(ict, identity, w, angles))
        truth.append(w)
    settings = TrackSettings(expression_l1=0.0, expression_prior=1.0, identity_prior=0.05)
    points = PointSet.ibug68(ict, settings)
    fitted, states = fit_identity(ict, np.stack(targets), points, settings, iterations=8)
    for state, target in zip(states, targets):
        fitter = FrameFitter(ict, fitted, settings, points)
        assert np.abs(fitter.project(fitter.vertices(state.weights), state.angles, state.translation)
                      - target).max() < 1.0
    assert states[2].weights[names.index("jawOpen")] > states[0].weights[names.index("jawOpen")] + 0.3
    # landmark geometry (x, y) of the recovered neutral face is closer to the truth than the mean face (dm)
    lm = ict.landmarks68.numpy()
    with torch.no_grad():
        zero = torch.zeros(1, ict.n_expression)
        got = ict(torch.as_tensor(fitted, dtype=torch.float32)[None], zero)[0].numpy()[lm]
        want = ict(torch.as_tensor(identity, dtype=torch.float32)[None], zero)[0].numpy()[lm]
    got, want = got - got.mean(0), want - want.mean(0)
    assert np.abs(got[:, :2] - want[:, :2]).mean() < 0.02  # the mean face is 0.028 off, this fit ~0.013


def test_calibration_file_is_sane():
    from msma.track_calibration import TrackCalibration

    for points in ("mesh", "ibug68"):
        cal = TrackCalibration.load(points)
        assert cal is not None and cal.frames >= 300 and cal.seed != 2000  # not the benchmark's seed
        assert np.degrees(np.abs(cal.pose_offset)).max() < 8 and np.degrees(np.abs(cal.gaze_rest)).max() < 10


def test_default_priors_keep_a_neutral_face_neutral(ict, identity, mesh):
    angles = np.radians([-5.0, 12.0, 2.0])
    target = project_points(ict, mesh, identity, np.zeros(ict.n_expression), angles)
    state = FrameFitter(ict, identity, TrackSettings(), mesh).fit(target)
    assert np.abs(state.weights).max() < 0.02
    assert np.degrees(np.abs(state.angles - angles)).max() < 0.5


def test_symmetry_prior_couples_left_and_right(ict, identity, mesh):
    names = ict.expression_names
    weights = np.zeros(ict.n_expression)
    weights[names.index("mouthSmile_L")] = 0.6  # one-sided
    target = project_points(ict, mesh, identity, weights, np.zeros(3))
    gap = {}
    for symmetry in (0.0, 500.0):
        settings = TrackSettings(symmetry_prior=symmetry, expression_l1=0.0, fit_iterations=3)
        state = FrameFitter(ict, identity, settings, mesh).fit(target)
        gap[symmetry] = state.weights[names.index("mouthSmile_L")] - state.weights[names.index("mouthSmile_R")]
    assert gap[0.0] > 0.4 and abs(gap[500.0]) < 0.5 * gap[0.0]


def test_far_side_points_are_dropped_and_outliers_downweighted(ict, identity, mesh):
    fitter = FrameFitter(ict, identity, TrackSettings(), mesh)
    weights = np.zeros(ict.n_expression)
    frontal = fitter.point_weights(np.zeros((468, 2)), np.eye(3), np.zeros(3), weights, robust=False)
    from msma.export import euler_to_matrix

    turned = fitter.point_weights(np.zeros((468, 2)), euler_to_matrix(np.radians([0.0, 60.0, 0.0])), np.zeros(3),
                                  weights, robust=False)
    assert (frontal > 0).mean() > 0.85 and (turned == 0).sum() > (frontal == 0).sum() + 20
    # the hidden points are on the side turned away (+x: Ry(60 deg) moves it to -z, away from the camera)
    assert (mesh.mean[(turned == 0) & (frontal > 0), 0] > 0).mean() > 0.95
    # 20 points moved by 40 px: the Cauchy weights find them, and the pose fit is closer than without them
    angles = np.radians([4.0, -10.0, 0.0])
    target = project_points(ict, mesh, identity, weights, angles)
    bad = np.random.default_rng(0).choice(468, 20, replace=False)
    target[bad] += 40.0
    errors = {}
    for robust in (None, 3.0):
        state = FrameFitter(ict, identity, TrackSettings(robust_scale=robust), mesh).fit(target)
        errors[robust] = np.degrees(np.abs(state.angles - angles)).max()
    scale = fitter.point_weights(target, euler_to_matrix(angles), state.translation, state.weights, robust=True)
    assert scale[bad].max() < 0.3 and np.median(scale) > 0.8
    assert errors[3.0] < 0.5 * errors[None]


def test_eyelid_points_move_with_a_blink(ict, mesh):
    """The mesh table seats some eyelid points on the eyeballs; the tracker moves them onto the lid skin."""
    from msma.fit import MeshPoints

    k = ict.expression_names.index("eyeBlink_L")
    pixels = ict.camera.focal / ict.camera.distance  # crop pixels per model unit near the face
    upper_lid = 386  # mediapipe: the middle of the face's left upper eyelid
    table = MeshPoints.for_model(ict)
    assert np.linalg.norm(table.expression_basis[k, upper_lid]) * pixels < 0.5  # on the eyeball in the table
    assert np.linalg.norm(mesh.expression_basis[k, upper_lid]) * pixels > 4.0  # a full blink moves it
    # the moved points stay where the table put them in the image of the mean face (within 1.5 crop pixels)
    moved = np.flatnonzero(np.abs(mesh.mean - table.mean[:468]).sum(1) > 0)
    assert 10 < len(moved) < 40
    assert np.linalg.norm((mesh.mean - table.mean[:468])[moved, :2], axis=1).max() * pixels < 1.5
