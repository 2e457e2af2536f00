from __future__ import annotations

import numpy as np
import pytest
import torch

from msma.face_model import MODEL_UNITS_TO_MM, Coefficients, FaceModel, euler_to_matrix
from msma.fit import (
    ContourTracker,
    DetectorBias,
    LandmarkFitSettings,
    MeshPoints,
    PhotometricSettings,
    bounded_least_squares,
    expression_l1_scale,
    fit_landmarks,
    motion_sigma_scale,
    pose_features,
    refine_photometric,
    solve_pose,
    solve_pose_weighted,
)
from msma.render import Renderer


@pytest.fixture(scope="module")
def contour(ict: FaceModel) -> ContourTracker:
    return ContourTracker(ict)


def random_faces(model: FaceModel, batch: int, seed: int = 0) -> Coefficients:
    g = torch.Generator().manual_seed(seed)
    coeffs = Coefficients.zeros(model, batch)
    coeffs.identity = torch.randn(batch, model.n_identity, generator=g)
    coeffs.expression = torch.rand(batch, model.n_expression, generator=g) * 0.4
    coeffs.expression *= torch.rand(batch, model.n_expression, generator=g) < 0.15
    coeffs.angles = (torch.rand(batch, 3, generator=g) - 0.5) * torch.tensor([0.5, 1.4, 0.4])
    coeffs.translation = torch.randn(batch, 3, generator=g) * 0.05
    return coeffs


def test_bounded_least_squares_matches_known_solution() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    x_true = np.array([0.5, -2.0, 0.2, 1.5, 0.0, 0.7])
    b = a @ x_true
    lower, upper = np.full(6, -np.inf), np.full(6, np.inf)
    lower[3:], upper[3:] = 0.0, 1.0
    x = bounded_least_squares(a, b, lower, upper)
    assert np.all(x[3:] >= 0) and np.all(x[3:] <= 1)
    # x_true violates the bound on x[3]: compare with scipy's reference solver
    from scipy.optimize import lsq_linear

    reference = lsq_linear(a, b, bounds=(lower, upper)).x
    np.testing.assert_allclose(x, reference, atol=1e-6)


def test_solve_pose_recovers_rigid_transform(ict: FaceModel) -> None:
    coeffs = random_faces(ict, 1, seed=3)
    coeffs.identity.zero_()
    coeffs.expression.zero_()
    lm2d = ict.project_landmarks(coeffs)[0].numpy()
    points = ict.mean[ict.landmarks68].numpy()
    angles, translation = solve_pose(ict, points, lm2d)
    np.testing.assert_allclose(angles, coeffs.angles[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(translation, coeffs.translation[0].numpy(), atol=1e-3)


def test_weighted_pose_downweights_outliers_and_follows_its_prior(ict: FaceModel) -> None:
    """The weighted pose solve recovers the rigid transform from a rough start; a point with weight 0 can be anywhere;
    a tight angle prior holds the angles at the prior instead of at what the points say."""
    coeffs = random_faces(ict, 1, seed=3)
    coeffs.identity.zero_()
    coeffs.expression.zero_()
    lm2d = ict.project_landmarks(coeffs)[0].numpy()
    lm2d[30] += 40.0  # the nose tip far off, weight 0 below
    points = ict.mean[ict.landmarks68].numpy()
    weights = np.ones(68)
    weights[30] = 0.0
    start = (np.zeros(3), np.zeros(3))
    angles, translation = solve_pose_weighted(ict, points, lm2d, weights, start)
    np.testing.assert_allclose(angles, coeffs.angles[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(translation, coeffs.translation[0].numpy(), atol=1e-3)
    held, _ = solve_pose_weighted(ict, points, lm2d, weights * 1e-3, start, np.zeros(3), np.deg2rad(0.1))
    assert np.abs(held).max() < np.deg2rad(0.5) < np.abs(coeffs.angles[0].numpy()).max()


def test_landmark_fit_reprojects_noisy_landmarks(ict: FaceModel, contour: ContourTracker) -> None:
    truth = random_faces(ict, 4, seed=1)
    target = ict.project_landmarks(truth)
    noisy = target + torch.randn(target.shape, generator=torch.Generator().manual_seed(0)) * 1.0
    weak_prior = LandmarkFitSettings(identity_prior=1.0, expression_l1=4.0)  # the solver, not the default priors
    fitted = fit_landmarks(ict, noisy, contour=contour, settings=weak_prior)
    error = (ict.project_landmarks(fitted) - target).norm(dim=-1).mean().item()
    assert error < 2.0  # pixels in the 224 crop; mean face alone is far worse
    baseline = Coefficients.zeros(ict, 4)
    baseline.angles, baseline.translation = fitted.angles, fitted.translation
    assert (ict.project_landmarks(baseline) - target).norm(dim=-1).mean().item() > error
    yaw_error = (fitted.angles[:, 1] - truth.angles[:, 1]).abs().max().item()
    assert np.rad2deg(yaw_error) < 8
    assert fitted.expression.min() >= 0 and fitted.expression.max() <= 1


def test_dense_mesh_points_constrain_identity(ict: FaceModel, contour: ContourTracker) -> None:
    """With mediapipe's mesh points (here: their exact projections) the identity is recovered better than from the
    68 landmarks alone, and the fit reprojects the mesh points."""
    mesh = MeshPoints.for_model(ict)
    if mesh is None:
        pytest.skip("no mediapipe -> ICT table")
    truth = random_faces(ict, 2, seed=6)
    truth.expression.zero_()
    rotation = euler_to_matrix(truth.angles.double()).numpy()
    dense = np.stack([
        ict.camera.project(torch.as_tensor(mesh.vertices_of(truth.identity[b].double().numpy(),
                                                            truth.expression[b].double().numpy())
                                           @ rotation[b].T + truth.translation[b].double().numpy())[None])[0, :, :2]
        .numpy() for b in range(2)])
    weak_prior = LandmarkFitSettings(identity_prior=1.0, expression_l1=4.0)
    target = ict.project_landmarks(truth)
    with_dense = fit_landmarks(ict, target, contour=contour, settings=weak_prior, dense=dense, mesh_points=mesh)
    only68 = fit_landmarks(ict, target, contour=contour, settings=weak_prior)
    assert (with_dense.identity - truth.identity).norm() < (only68.identity - truth.identity).norm()


def test_detector_bias_is_removed_at_the_estimated_pose(ict: FaceModel, contour: ContourTracker) -> None:
    """A detector whose 68 points shift with the head's yaw (here: 8 px x sin(yaw) to the right, 3 px down) is
    corrected by its offset table when the fit knows the points came from it, and only then."""
    truth = random_faces(ict, 3, seed=11)
    truth.expression.zero_()
    truth.angles[:, 1] = torch.tensor([-0.6, 0.3, 0.7])
    coef = np.zeros((68, 2, pose_features(np.zeros(3)).shape[1]))
    coef[:, 0, 1], coef[:, 1, 0] = 8.0, 3.0
    bias = DetectorBias({"dlib68": coef})
    target = ict.project_landmarks(truth).double().numpy()
    shifted = np.stack([target[b] + bias.offset("dlib68", truth.angles[b].double().numpy()) for b in range(3)])
    weak_prior = LandmarkFitSettings(identity_prior=1.0, expression_l1=4.0)

    def reprojection_error(sources, points=shifted) -> float:
        fitted = fit_landmarks(ict, points, contour=contour, settings=weak_prior, landmark_sources=sources,
                               detector_bias=bias)
        inner = slice(17, 68)  # the jaw is matched on the silhouette, not at the markup vertices projected here
        return float(np.linalg.norm(ict.project_landmarks(fitted).double().numpy()[:, inner] - target[:, inner],
                                    axis=-1).mean())

    corrected, uncorrected = reprojection_error(["dlib"] * 3), reprojection_error(None)
    unshifted = reprojection_error(None, target)  # what the fitter reaches from the true projections (~1 px)
    assert corrected < unshifted + 0.6 and uncorrected > corrected + 3.0  # crop pixels
    assert reprojection_error(["face_alignment"] * 3) == pytest.approx(uncorrected)  # no table for that detector


def test_neutral_face_keeps_neutral_expression(ict: FaceModel, contour: ContourTracker) -> None:
    """The default sparse, left/right-coupled expression prior leaves a neutral face's weights near zero."""
    truth = random_faces(ict, 4, seed=7)
    truth.expression.zero_()
    target = ict.project_landmarks(truth)
    noisy = target + torch.randn(target.shape, generator=torch.Generator().manual_seed(3)) * 1.0
    fitted = fit_landmarks(ict, noisy, contour=contour)
    assert fitted.expression.max().item() <= 0.15


def test_per_expression_l1_scale_suppresses_only_its_blendshape(ict: FaceModel, contour: ContourTracker) -> None:
    """A smile of 0.7 is recovered under weak uniform priors; a large multiplier on the two mouthSmile weights alone
    (the expressions-alone stage) keeps them at zero, while the open jaw of the same face is still found."""
    truth = Coefficients.zeros(ict, 1)
    jaw, smile_l, smile_r = (ict.expression_names.index(n) for n in ("jawOpen", "mouthSmile_L", "mouthSmile_R"))
    truth.expression[0, [jaw, smile_l, smile_r]] = torch.tensor([0.6, 0.7, 0.7])
    target = ict.project_landmarks(truth)
    base = LandmarkFitSettings(expression_prior=4.0, expression_l1=8.0, detector_bias=False)
    uniform = fit_landmarks(ict, target, contour=contour, settings=base)
    scale = np.ones(ict.n_expression)
    scale[[smile_l, smile_r]] = 1e4
    scaled = fit_landmarks(ict, target, contour=contour,
                           settings=LandmarkFitSettings(expression_prior=4.0, expression_l1=8.0, detector_bias=False,
                                                        expression_l1_scale=tuple(scale)))
    assert uniform.expression[0, smile_l] > 0.3 and uniform.expression[0, smile_r] > 0.3
    assert scaled.expression[0, smile_l] == 0.0 and scaled.expression[0, smile_r] == 0.0
    assert scaled.expression[0, jaw] > 0.3
    with pytest.raises(ValueError, match="values for"):
        expression_l1_scale(ict, (1.0, 2.0))
    with pytest.raises(FileNotFoundError, match="derive_expression_l1"):
        expression_l1_scale(ict, "no/such/table.npz")


def test_relaxed_lasso_undamps_the_support_and_keeps_the_rest_at_zero(ict: FaceModel,
                                                                      contour: ContourTracker) -> None:
    """With `expression_debias_prior` the blendshapes the strong L1 turned on are re-solved under the weak prior: a
    0.6 jaw opening damped by the L1 comes back closer to 0.6, and every blendshape the L1 left at zero stays 0."""
    truth = Coefficients.zeros(ict, 1)
    jaw = ict.expression_names.index("jawOpen")
    truth.expression[0, jaw] = 0.6
    target = ict.project_landmarks(truth)
    strong = dict(expression_prior=64.0, expression_l1=512.0, detector_bias=False)
    lasso = fit_landmarks(ict, target, contour=contour, settings=LandmarkFitSettings(**strong))
    relaxed = fit_landmarks(ict, target, contour=contour,
                            settings=LandmarkFitSettings(**strong, expression_debias_prior=1.0))
    assert 0.02 < lasso.expression[0, jaw] < 0.55  # damped, but on the support
    assert abs(relaxed.expression[0, jaw] - 0.6) < abs(lasso.expression[0, jaw] - 0.6) - 0.03
    off_support = lasso.expression[0] <= 0.02
    assert torch.all(relaxed.expression[0][off_support] == 0.0)


def test_shared_identity_fit_uses_one_identity(ict: FaceModel, contour: ContourTracker) -> None:
    truth = random_faces(ict, 3, seed=2)
    truth.identity[:] = truth.identity[:1]
    fitted = fit_landmarks(ict, ict.project_landmarks(truth), contour=contour, shared_identity=True)
    torch.testing.assert_close(fitted.identity[0], fitted.identity[1])
    torch.testing.assert_close(fitted.identity[0], fitted.identity[2])


def test_prior_mean_pulls_towards_the_network_estimate(ict: FaceModel, contour: ContourTracker) -> None:
    truth = random_faces(ict, 1, seed=4)
    target = ict.project_landmarks(truth)
    weak_prior = LandmarkFitSettings(identity_prior=1.0)
    free = fit_landmarks(ict, target, contour=contour, settings=weak_prior)
    anchored = fit_landmarks(ict, target, contour=contour, prior_mean=truth, settings=weak_prior)
    error_free = (free.identity - truth.identity).norm()
    error_anchored = (anchored.identity - truth.identity).norm()
    assert error_anchored < error_free


def test_identity_prior_around_an_estimate_is_its_own_weight(ict: FaceModel, contour: ContourTracker) -> None:
    """With a ``prior_mean`` (network+refine) the identity prior's weight is `identity_prior_around_estimate`, not
    `identity_prior` (the weight of a fit from the mean face); None falls back to `identity_prior`."""
    truth = random_faces(ict, 1, seed=4)
    target = ict.project_landmarks(truth)
    estimate = truth.clone()
    estimate.identity = estimate.identity + 0.5
    held = LandmarkFitSettings(identity_prior=1e-3, identity_prior_around_estimate=1e6)
    anchored = fit_landmarks(ict, target, contour=contour, prior_mean=estimate, settings=held)
    torch.testing.assert_close(anchored.identity, estimate.identity, atol=1e-3, rtol=0)
    loose = LandmarkFitSettings(identity_prior=1.0, identity_prior_around_estimate=None)
    free = fit_landmarks(ict, target, contour=contour, prior_mean=estimate, settings=loose)
    assert (free.identity - estimate.identity).norm() > 1.0  # the landmarks pull it off the estimate
    strong_from_mean = LandmarkFitSettings(identity_prior=1e6, identity_prior_around_estimate=1e-3)
    from_mean = fit_landmarks(ict, target, contour=contour, settings=strong_from_mean)  # no estimate
    assert from_mean.identity.abs().max() < 1e-3


def test_photometric_refinement_lowers_image_error(ict: FaceModel, contour: ContourTracker) -> None:
    renderer = Renderer(112)
    truth = random_faces(ict, 1, seed=5)
    truth.texture = torch.randn(1, ict.n_texture, generator=torch.Generator().manual_seed(1)) * 0.5
    truth.lighting[0, [1, 10, 19]] = 0.2
    geometry = ict.geometry(truth)
    target = renderer.render_colors(geometry.screen * torch.tensor([0.5, 0.5, 1.0]), ict.triangles,
                                    geometry.colors, background=0.3).image.detach()
    target = torch.nn.functional.interpolate(target.permute(0, 3, 1, 2), size=224).permute(0, 2, 3, 1)
    landmarks = ict.project_landmarks(truth).detach()
    start = fit_landmarks(ict, landmarks, contour=contour)

    def image_error(coeffs: Coefficients) -> float:
        g = ict.geometry(coeffs)
        out = renderer.render_colors(g.screen * torch.tensor([0.5, 0.5, 1.0]), ict.triangles, g.colors,
                                     background=0.3)
        return (out.image - target[:, ::2, ::2]).abs().mean().item()

    def shape_error_mm(coeffs: Coefficients) -> float:  # face-region vertices, pose removed
        with torch.no_grad():
            moved = ict(coeffs.identity, coeffs.expression) - ict(truth.identity, truth.expression)
            return float(moved.norm(dim=-1)[0, ict.face_vertices].mean() * MODEL_UNITS_TO_MM)

    def projection_error_px(coeffs: Coefficients) -> float:  # face-region vertices in the image, pose included
        with torch.no_grad():
            moved = ict.geometry(coeffs).screen[..., :2] - geometry.screen[..., :2]
            return float(moved.norm(dim=-1)[0, ict.face_vertices].mean())

    refined = refine_photometric(ict, renderer, target, landmarks, start, PhotometricSettings(iterations=15))
    assert image_error(refined) < image_error(start)
    # the colour fit must not buy its lower image error with a worse shape (measured: 7.7 -> 6.9 mm, 3.3 -> 3.1 px)
    assert shape_error_mm(refined) < 1.05 * shape_error_mm(start)
    assert projection_error_px(refined) < 1.05 * projection_error_px(start)
    # albedo and lighting alone (the default photometric step): lower image error, shape and pose untouched
    colour = refine_photometric(ict, renderer, target, landmarks, start, PhotometricSettings(texture_iterations=15),
                                optimise_texture_only=True)
    assert image_error(colour) < image_error(start)
    for name in ("identity", "expression", "angles", "translation"):
        assert torch.equal(getattr(colour, name), getattr(start, name).to(torch.float32)), name
    assert not torch.equal(colour.texture, start.texture) and not torch.equal(colour.lighting, start.lighting)


def test_photometric_rejects_mismatched_renderer(ict: FaceModel) -> None:
    with pytest.raises(ValueError, match="resolution"):
        refine_photometric(ict, Renderer(64), torch.zeros(1, 224, 224, 3), np.zeros((1, 68, 2)),
                           Coefficients.zeros(ict, 1))


def test_projected_landmarks_follow_the_annotators_convention(ict: FaceModel, contour: ContourTracker) -> None:
    """Reported 68 points are where an iBUG-trained detector would put them on the fitted face: the model's points
    plus the shipped dlib offset table at the face's pose (yaw terms, as the fitter removes them)."""
    bias = DetectorBias.load()
    if bias is None or "dlib68" not in bias.tables:
        pytest.skip("no detector offset table")
    face = random_faces(ict, 1, seed=5)
    shift = contour.project(ict, face) - contour.project(ict, face, annotator_offset=False)
    expected = bias.offset("dlib68", face.angles[0].double().numpy(), LandmarkFitSettings().detector_bias_terms)
    np.testing.assert_allclose(shift, expected, atol=1e-4)
    assert np.abs(shift).max() > 0.5  # pixels: the convention matters


def test_asymmetric_identity_prior_keeps_the_face_symmetric(ict: FaceModel, contour: ContourTracker) -> None:
    """ICT's identity components are left/right symmetric or antisymmetric; a large asymmetric-prior scale pins the
    antisymmetric ones near zero while the symmetric ones are still fitted as before."""
    from msma.fit import identity_asymmetry

    asymmetric = identity_asymmetry(ict) > 0.5
    assert 10 < asymmetric.sum() < 50 and np.isin(np.round(identity_asymmetry(ict), 2), [0.0, 1.0]).mean() > 0.95
    truth = random_faces(ict, 2, seed=3)
    target = ict.project_landmarks(truth)
    plain = fit_landmarks(ict, target, contour=contour, settings=LandmarkFitSettings(identity_prior=1.0))
    pinned = fit_landmarks(ict, target, contour=contour, settings=LandmarkFitSettings(
        identity_prior=1.0, asymmetric_identity_prior_scale=1e4))
    mask = torch.as_tensor(asymmetric)
    assert pinned.identity[:, mask].abs().max() < 0.05 < plain.identity[:, mask].abs().max()
    assert pinned.identity[:, ~mask].abs().max() > 0.3


def test_motion_sigma_scale_grows_with_expression_motion(ict: FaceModel, contour: ContourTracker) -> None:
    """The identity stage's per-point sigma factor is 1 where no blendshape moves a point and sqrt(1 + (m / X)^2)
    for the point's largest one-blendshape displacement m; on the model's 68 points the lips get larger factors than
    the nose bridge, and the option is off by default."""
    basis = np.zeros((2, 3, 3))
    basis[0, 1, 0] = 4.0 / MODEL_UNITS_TO_MM  # point 1 moves 4 mm under blendshape 0
    basis[1, 2, 1] = 3.0 / MODEL_UNITS_TO_MM
    basis[0, 2, 2] = 8.0 / MODEL_UNITS_TO_MM  # point 2: its largest displacement (8 mm) counts
    np.testing.assert_allclose(motion_sigma_scale(basis, 4.0), [1.0, np.sqrt(2.0), np.sqrt(5.0)])
    factors = motion_sigma_scale(contour.expression_basis[:, contour.rows(contour.landmarks)], 8.0)
    assert factors[27] < 1.5 and factors[62:65].min() > 2 * factors[27]  # nose bridge vs inner upper lip
    assert LandmarkFitSettings().identity_stage_motion_mm is None
