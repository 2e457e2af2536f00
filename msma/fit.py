"""Analysis-by-synthesis fitting.

1. `fit_landmarks`: pose by PnP, shape and expression by bounded regularised linear least squares on the
   68 landmarks (perspective linearised at the current depth), jaw-contour correspondences re-chosen on the
   silhouette of the far side each round, and the detectors' pose-dependent point offsets (`DetectorBias`)
   removed at the current pose. Several photos of one person can share one identity.
2. `refine_photometric`: differentiable rendering, photometric loss with trimmed per-pixel residuals (so hair,
   glasses and hands do not drag the fit), landmark loss and regularisers; Adam over all coefficients.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from msma.face_model import (
    MODEL_UNITS_TO_MM,
    Coefficients,
    FaceModel,
    euler_to_matrix,
    matrix_to_euler,
    sh_irradiance,
    vertex_normals,
)
from msma.losses import (
    RegularizerWeights,
    coefficient_regularizer,
    landmark_loss,
    landmark_weights,
    lighting_regularizer,
    photometric_loss,
)
from msma.threads import single_torch_thread

MESH_TABLE_PATH = Path(__file__).resolve().parent / "data" / "mediapipe_to_ict.npz"
# the detectors' pose-dependent point offsets, made by scripts/derive_detector_bias.py
DETECTOR_BIAS_PATH = Path(__file__).resolve().parent / "data" / "detector_bias.npz"
EXPRESSION_L1_PATH = Path(__file__).resolve().parent / "data" / "expression_l1_scale.npz"
# Far-side jaw points slide to the silhouette once the head turns more than this.
CONTOUR_YAW_THRESHOLD = np.deg2rad(12.0)
# The OpenCV camera has y down and looks down +z; ours has y up and looks down -z from z = distance.
_FLIP = np.diag([1.0, -1.0, -1.0])


@dataclass
class LandmarkFitSettings:
    """Landmark fitting. Priors were chosen on the dev splits only (synthetic ICT seed 2000, SFM dev split), see
    benchmarks/fit_settings.py; benchmarks report on other seeds."""

    rounds: int = 4
    landmark_sigma_px: float = 2.0  # expected detector noise of the 68 points in the 224 crop
    jaw_sigma_scale: float = 2.0  # jaw points are less reliable
    dense_sigma_scale: float = 1.0  # multiplies each mesh point's measured noise (correspondence table sigma_px)
    dense_min_sigma_px: float = 1.5
    use_dense: bool = True  # fit mediapipe's 478 mesh points when the detection has them
    dense_landmark68_weight: float = 0.5  # 68-point rows kept beside the dense ones at this weight
    visibility_threshold: float = 0.15  # mesh points whose surface turns further from the camera are dropped
    robust_scale: float = 3.0  # Cauchy reweighting: residuals of this many sigmas count half
    # weight of ||identity||^2 (coefficients ~ N(0, 1)) for a fit from the mean face. Chosen on dev data
    # (benchmarks/results/*_dev_identity_prior*.md): 20 against the earlier 30 leaves the SFM dev shapes where they
    # were (single photo, several photos) and separates the dev subjects better, and the fitted points follow real
    # photos more closely; 10 and weaker lose at yaw 60 and on the synthetic identities, 3 is worse than the mean face.
    identity_prior: float = 20.0
    # the same weight when the prior is centred on an estimate (``prior_mean``: network+refine's network answer),
    # around that estimate; None: identity_prior. 30: weaker ones let the landmarks pull the network's identity away
    # (SFM dev, benchmarks/results/fit_settings_dev_network_refine.md)
    identity_prior_around_estimate: float | None = 30.0
    identity_modes: int | None = None  # fit only the first k identity modes (the rest stay at the prior centre)
    # multiplies identity_prior for the identity directions that make the face left/right asymmetric (the -1
    # eigenspace of the model's mirror map, `msma.mirror`): one view sees one side of the face badly
    asymmetric_identity_prior_scale: float = 1.0
    # weight of the mean squared identity displacement (mm^2) of face vertices along the viewing direction, which
    # one photo cannot observe: identity changes go in-plane unless the landmarks demand depth
    depth_prior: float = 0.0
    # mediapipe's per-point relative depth (its z) as a measurement: the model's camera-frame depth of the visible
    # mesh points, centred, against mediapipe's, centred, with this noise (crop pixels); None leaves depth out.
    # depth_scale multiplies mediapipe's z (same scale as x by its definition); None estimates it per image.
    mesh_depth_sigma_px: float | None = None
    mesh_depth_scale: float | None = 1.0
    # Expression priors, chosen on dev data (benchmarks/expression_settings.py: synthetic faces with expressions and
    # detector landmarks, seed 2000; benchmarks/fit_settings.py: neutral SFM dev faces). Weaker ones let the mesh
    # points' definition noise through as expressions (neutral faces got weights above 0.15) with no gain in MAE.
    expression_prior: float = 64.0  # weight of ||expression||^2 (ICT weights in [0, 1])
    expression_l1: float = 128.0  # weight of sum(expression): sparse, zero unless the landmarks demand it
    # Identity is estimated first with weaker expression priors, so that what a smile or a frown moves is not taken
    # for the person's shape; the last round re-solves the expressions alone, identity fixed, with the priors above.
    # None: one stage (the priors above throughout).
    identity_stage_expression_prior: float | None = 16.0
    identity_stage_expression_l1: float | None = 32.0
    # In the identity stage, each point's sigma grows by sqrt(1 + (m / identity_stage_motion_mm)^2), m the largest
    # displacement (mm) any blendshape at weight 1 gives it: identity comes first from the points expressions
    # hardly move (nose, face outline, eye corners). None: every point counts as its sigma says
    identity_stage_motion_mm: float | None = None
    identity_stage_motion_points: str = "all"  # "all" scales the 68 and the mesh points, "mesh" the mesh points only
    # per-expression multipliers of expression_l1 in the expressions-alone stage: "table" reads
    # msma/data/expression_l1_scale.npz (scripts/derive_expression_l1.py: larger for the blendshapes that detector
    # noise turns on in neutral synthetic faces), another string such a table's path, a tuple the multipliers in
    # the model's order; None keeps one weight for all
    expression_l1_scale: str | tuple[float, ...] | None = None
    # Relaxed lasso in the last round: expressions whose sparse-prior weight exceeds expression_support_threshold
    # are re-solved with these weaker priors (the rest held at 0); None: off
    expression_debias_prior: float | None = None
    expression_debias_l1: float = 0.0
    expression_support_threshold: float = 0.02
    # Pose solve: False keeps OpenCV's unweighted solvePnP on the visible points; True minimises the same weighted,
    # robustly rescaled residuals as the shape solve (each point's sigma and Cauchy scale), so the points the shape
    # solve trusts least (jaw, mesh points with large definition noise) do not steer the head's pitch and yaw.
    pose_weighted: bool = False
    # Gaussian prior (degrees, per angle) pulling the pose towards ``prior_mean``'s angles (e.g. the network's
    # estimate) in the weighted solve; None: no prior
    pose_prior_deg: float | None = None
    # Expression weights read off mediapipe's mesh points by a learnt regressor (`msma.expression_regressor`,
    # trained on synthetic renders, scripts/derive_expression_regressor.py): when set, the last round's expression
    # prior is centred on the regressor's answer with this L2 weight and expression_regressor_l1 instead of on the
    # neutral face (images without mesh depth keep the priors above); None: off
    expression_regressor_prior: float | None = None
    expression_regressor_l1: float = 0.0
    expression_regressor_dead_zone: float = 0.0  # regressed weights below this count as 0
    expression_regressor_identity_stage: bool = False  # also centre the identity stage's expression prior there
    expression_regressor_path: str | None = None  # another regressor file (None: msma/data/expression_regressor.npz)
    # only these blendshapes take the regressor's weight (the others count as 0: centre and L1 as without it);
    # None: all. `msma.expression_regressor.clearest_blendshapes()`: those it reads best on its held-out renders
    expression_regressor_blendshapes: tuple[str, ...] | None = None
    # adaptive lasso from the regressor: the last round's L1 on blendshape j is multiplied by max(0, 1 - p_j / this),
    # p_j the regressor's weight (prior centre unchanged unless expression_regressor_prior is set); None: off
    expression_regressor_l1_release: float | None = None
    symmetry_prior: float = 8.0  # weight of (w_L - w_R)^2 for ARKit pairs that usually move together
    # subtract the detectors' pose-dependent point offsets (`DetectorBias`) at the current pose estimate. Terms:
    # "all" pose features, "yaw" (pitch taken as 0) or "constant" (the frontal offset). "yaw" was best on both dev
    # sets (benchmarks/results/*_detector_bias.md): with the pitch terms, pitch errors fed back into the correction.
    detector_bias: bool = True
    detector_bias_terms: str = "yaw"


@dataclass
class PhotometricSettings:
    iterations: int = 40
    texture_iterations: int = 10  # when only albedo and lighting are estimated (the default): a few steps suffice
    learning_rate: float = 0.01
    photometric_weight: float = 1.5
    landmark_weight: float = 3e-3
    regularizer_weight: float = 3e-4
    lighting_weight: float = 5.0
    trim_fraction: float = 0.15  # ignore the worst residual pixels (occluders)
    resolution: int = 112  # photometric loss at this crop size (speed); landmarks stay in 224 pixels
    rasterize_every: int = 10  # visibility changes slowly: re-rasterise every k steps, re-interpolate every step
    # Shape, expression and pose from the photometric loss made shapes worse on the SFM benchmark
    # (benchmarks/results/sfm_3d_*.md): by default it only estimates albedo and lighting.
    refine_shape: bool = False
    face_region_only: bool = True  # loss on the front face only (no scalp, ears, neck, eyeballs, mouth interior)
    skin_colour_tolerance: float = 0.06  # photo pixels whose chromaticity is farther from the face's median are out


class ContourTracker:
    """Candidate vertices for each jaw landmark (a horizontal strip from the landmark towards the nose), and a
    small cached copy of the model restricted to landmark + candidate vertices so landmark fitting never
    touches the full bases."""

    def __init__(self, model: FaceModel, band: float = 0.06) -> None:
        mean = model.mean.cpu().numpy()
        face = model.face_vertices.cpu().numpy()
        self.landmarks = model.landmarks68.cpu().numpy()
        self.candidates: dict[int, np.ndarray] = {}
        for j in list(range(0, 8)) + list(range(9, 17)):
            x, y, z = mean[self.landmarks[j]]
            pts = mean[face]
            keep = (
                (np.abs(pts[:, 1] - y) < band)
                & (np.sign(pts[:, 0]) == np.sign(x))
                & (np.abs(pts[:, 0]) <= np.abs(x) + 1e-6)
                & (pts[:, 2] >= z - 1e-6)
            )
            self.candidates[j] = np.unique(np.concatenate([face[keep], [self.landmarks[j]]]))
        self.vertices = np.unique(np.concatenate([self.landmarks, *self.candidates.values()]))
        self.row = {v: i for i, v in enumerate(self.vertices.tolist())}
        idx = torch.as_tensor(self.vertices, device=model.device)
        flat = (idx[:, None] * 3 + torch.arange(3, device=idx.device)).reshape(-1)
        self.mean = mean[self.vertices].astype(np.float64)  # (U, 3)
        self.identity_basis = model.identity_basis[:, flat].cpu().double().numpy().reshape(-1, len(idx), 3)
        self.expression_basis = model.expression_basis[:, flat].cpu().double().numpy().reshape(-1, len(idx), 3)
        sample = torch.as_tensor(face[:: max(1, len(face) // 600)], device=model.device)
        cols = (sample[:, None] * 3 + torch.arange(3, device=sample.device)).reshape(-1)
        # identity displacement of ~600 face vertices, mm per unit coefficient: (n_id, K, 3)
        self.face_identity_mm = (model.identity_basis[:, cols].cpu().double().numpy().reshape(-1, len(sample), 3)
                                 * MODEL_UNITS_TO_MM)

    def rows(self, vertex_index: np.ndarray) -> np.ndarray:
        return np.array([self.row[v] for v in vertex_index.tolist()])

    def vertices_of(self, rows: np.ndarray, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """(K,) rows -> (K, 3) model-frame vertices for one face."""
        return (
            self.mean[rows]
            + np.einsum("n,nkc->kc", identity, self.identity_basis[:, rows])
            + np.einsum("n,nkc->kc", expression, self.expression_basis[:, rows])
        )

    def correspondences(self, model: FaceModel, coeffs: Coefficients) -> np.ndarray:
        """(68,) vertex index per landmark for one face, jaw points moved to the far-side silhouette."""
        index = self.landmarks.copy()
        yaw = float(coeffs.angles[0, 1])
        if abs(yaw) < CONTOUR_YAW_THRESHOLD:
            return index
        far_side = range(9, 17) if yaw > 0 else range(0, 8)
        rotation = euler_to_matrix(coeffs.angles[:1].double().cpu())[0].numpy()
        identity = coeffs.identity[0].double().cpu().numpy()
        expression = coeffs.expression[0].double().cpu().numpy()
        for j in far_side:
            verts = self.vertices_of(self.rows(self.candidates[j]), identity, expression)
            cam = verts @ rotation.T + coeffs.translation[0].double().cpu().numpy()
            xs = cam[:, 0] / (model.camera.distance - cam[:, 2])
            index[j] = self.candidates[j][np.argmax(xs) if yaw > 0 else np.argmin(xs)]
        return index


    def project(self, model: FaceModel, coeffs: Coefficients, annotator_offset: bool = True) -> np.ndarray:
        """(68, 2) crop pixels of one face's fitted landmarks as a 68-point detector defines them: the model's
        landmark vertices, the far-side jaw on the silhouette (what `fit_landmarks` matched to the detector), plus
        (``annotator_offset``) the pose-dependent offset by which dlib — trained on iBUG hand labels — places each
        point away from that surface point (`DetectorBias` "dlib68", the terms the fitter removes by default)."""
        single = coeffs.to("cpu")
        index = self.correspondences(model, single)
        rows = self.rows(index)
        verts = self.vertices_of(rows, single.identity[0].double().numpy(), single.expression[0].double().numpy())
        rotation = euler_to_matrix(single.angles[:1].double())[0].numpy()
        cam = verts @ rotation.T + single.translation[0].double().numpy()
        points = model.camera.project(torch.as_tensor(cam))[:, :2].numpy()
        bias = _detector_bias() if annotator_offset else None
        offset = None if bias is None else bias.offset("dlib68", single.angles[0].double().numpy(),
                                                      LandmarkFitSettings.detector_bias_terms)
        return points if offset is None else points + offset


def _camera_matrix(model: FaceModel) -> np.ndarray:
    cam = model.camera
    return np.array([[cam.focal, 0, cam.center], [0, cam.focal, cam.center], [0, 0, 1]], dtype=np.float64)


def solve_pose(
    model: FaceModel, points3d: np.ndarray, points2d: np.ndarray, weights: np.ndarray | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid pose (angles (3,), translation (3,)) mapping model points (K,3) onto crop pixels (K,2)."""
    keep = np.ones(len(points3d), bool) if weights is None else weights > 0
    obj, img = points3d[keep].astype(np.float64), points2d[keep].astype(np.float64)
    distance = model.camera.distance
    if init is None:
        ok, rvec, tvec = cv2.solvePnP(obj, img, _camera_matrix(model), None, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            rvec, tvec = np.zeros(3), np.array([0.0, 0.0, distance])
    else:
        rotation = _FLIP @ euler_to_matrix(torch.as_tensor(init[0][None], dtype=torch.float64))[0].numpy()
        rvec = cv2.Rodrigues(rotation)[0]
        tvec = _FLIP @ init[1] + np.array([0.0, 0.0, distance])
    ok, rvec, tvec = cv2.solvePnP(
        obj, img, _camera_matrix(model), None, rvec.reshape(3, 1).copy(), tvec.reshape(3, 1).copy(),
        useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    rotation = _FLIP @ cv2.Rodrigues(rvec)[0]
    translation = _FLIP @ (tvec.ravel() - np.array([0.0, 0.0, distance]))
    return matrix_to_euler(rotation), translation


def solve_pose_weighted(
    model: FaceModel, points3d: np.ndarray, points2d: np.ndarray, weights: np.ndarray,
    init: tuple[np.ndarray, np.ndarray], prior_angles: np.ndarray | None = None, prior_sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid pose (angles (3,), translation (3,)) minimising sum_k weights_k^2 |project(R p_k + t) - q_k|^2 (crop
    pixels), plus ((angles - prior_angles) / prior_sigma)^2 (radians) when a prior is given. OpenCV's solvePnP takes
    no per-point weights or priors, hence scipy's least_squares here, started from ``init``."""
    from scipy.optimize import least_squares

    keep = weights > 0
    obj, img, w = points3d[keep].astype(np.float64), points2d[keep].astype(np.float64), weights[keep]
    cam = model.camera

    def residuals(params: np.ndarray) -> np.ndarray:
        rotation = euler_to_matrix(torch.as_tensor(params[None, :3]))[0].numpy()
        v = obj @ rotation.T + params[3:]
        depth = cam.distance - v[:, 2]
        x = cam.center + cam.focal * v[:, 0] / depth
        y = cam.center - cam.focal * v[:, 1] / depth
        out = [(x - img[:, 0]) * w, (y - img[:, 1]) * w]
        if prior_angles is not None and prior_sigma is not None:
            out.append((params[:3] - prior_angles) / prior_sigma)
        return np.concatenate(out)

    start = np.concatenate([init[0], init[1]]).astype(np.float64)
    solution = least_squares(residuals, start, method="lm", x_scale=np.array([0.1, 0.1, 0.1, 0.01, 0.01, 0.1]))
    return solution.x[:3], solution.x[3:]


def _projection_rows(
    model: FaceModel, coeffs: Coefficients, mean: np.ndarray, identity_basis: np.ndarray,
    expression_basis: np.ndarray, target: np.ndarray, sigma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linearise the projection of K model points in (identity, expression) at the current depth.

    mean (K, 3), bases (n, K, 3) of the points; target (K, 2) crop pixels; sigma (K,) pixels. Returns
    A_id (2K, n_id), A_exp (2K, n_exp), b (2K,), rows scaled by 1/sigma: weighted residual = A_id id + A_exp exp - b.
    """
    cam = model.camera
    rotation = euler_to_matrix(coeffs.angles[:1].double().cpu())[0].numpy()
    t = coeffs.translation[0].double().cpu().numpy()
    identity = coeffs.identity[0].double().cpu().numpy()
    expression = coeffs.expression[0].double().cpu().numpy()
    verts = (mean + np.einsum("n,nkc->kc", identity, identity_basis)
             + np.einsum("n,nkc->kc", expression, expression_basis))
    depth = cam.distance - (verts @ rotation.T + t)[:, 2]  # (K,) frozen
    # x_pix = c + f * (R v + t)_x / d ;  y_pix = c - f * (R v + t)_y / d
    rows_x = cam.focal * rotation[0] / depth[:, None]  # (K, 3)
    rows_y = -cam.focal * rotation[1] / depth[:, None]
    const_x = cam.center + (cam.focal * ((mean @ rotation[0]) + t[0])) / depth
    const_y = cam.center - (cam.focal * ((mean @ rotation[1]) + t[1])) / depth

    def design(basis: np.ndarray) -> np.ndarray:  # (n, K, 3) -> (2K, n)
        return np.concatenate([np.einsum("nkc,kc->kn", basis, rows_x), np.einsum("nkc,kc->kn", basis, rows_y)])

    w = np.concatenate([1.0 / sigma, 1.0 / sigma])
    b = np.concatenate([target[:, 0] - const_x, target[:, 1] - const_y])
    return design(identity_basis) * w[:, None], design(expression_basis) * w[:, None], b * w


def _depth_rows(
    model: FaceModel, coeffs: Coefficients, mesh_points: MeshPoints, depth: np.ndarray, seen: np.ndarray,
    settings: LandmarkFitSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (A_id, A_exp, b) for mediapipe's relative depth of the ``seen`` mesh points (crop pixels, smaller is
    nearer): the model's camera-frame depth in pixels at the face's distance, centred over those points (mediapipe's
    origin is its own), against the measured depth centred the same way, rows scaled by 1 / sigma."""
    cam = model.camera
    rotation = euler_to_matrix(coeffs.angles[:1].double().cpu())[0].numpy()
    t = coeffs.translation[0].double().cpu().numpy()
    verts = mesh_points.vertices_of(coeffs.identity[0].double().cpu().numpy(),
                                    coeffs.expression[0].double().cpu().numpy())[seen]
    pixels_per_unit = cam.focal / (cam.distance - float((verts @ rotation[2]).mean() + t[2]))
    # camera-frame z grows towards the camera, mediapipe's depth away from it
    axis = -pixels_per_unit * rotation[2]

    def centred(x: np.ndarray) -> np.ndarray:
        return x - x.mean(axis=0, keepdims=True)

    a_id = centred(np.einsum("nkc,c->kn", mesh_points.identity_basis[:, seen], axis))
    a_exp = centred(np.einsum("nkc,c->kn", mesh_points.expression_basis[:, seen], axis))
    const = centred(mesh_points.mean[seen] @ axis)
    measured = centred(depth[seen])
    if settings.mesh_depth_scale is None:  # mediapipe's depth scale for this image, from the current model depth
        model_depth = centred(verts @ axis)
        scale = float(model_depth @ measured / max(measured @ measured, 1e-9))
    else:
        scale = settings.mesh_depth_scale
    w = 1.0 / settings.mesh_depth_sigma_px
    return a_id * w, a_exp * w, (scale * measured - const) * w


def _linear_system(
    model: FaceModel, tracker: ContourTracker, coeffs: Coefficients, index: np.ndarray, target: np.ndarray,
    sigma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_projection_rows` for the 68 landmark vertices ``index`` (contour-updated) of the tracker."""
    rows = tracker.rows(index)
    return _projection_rows(model, coeffs, tracker.mean[rows], tracker.identity_basis[:, rows],
                            tracker.expression_basis[:, rows], target, sigma)


def pose_features(angles: np.ndarray) -> np.ndarray:
    """(S, 8) features of head poses (S, 3) radians (pitch, yaw, roll) on which detector offsets are regressed:
    1, sin yaw, sin pitch, their squares and product, sin^3 yaw, sin^2 yaw sin pitch."""
    a = np.atleast_2d(np.asarray(angles, np.float64))
    sp, sy = np.sin(a[:, 0]), np.sin(a[:, 1])
    return np.stack([np.ones_like(sy), sy, sp, sy * sy, sp * sp, sy * sp, sy**3, sy * sy * sp], axis=1)


class DetectorBias:
    """Pose-dependent offsets of detector points (crop pixels), ``msma/data/detector_bias.npz`` made by
    scripts/derive_detector_bias.py: detected ~ true projection + offset(pose); the fitter subtracts the offset
    expected at its current pose estimate. Tables: ``mediapipe_dense`` (478 points), ``dlib68``, ``mediapipe68``."""

    def __init__(self, tables: dict[str, np.ndarray]) -> None:
        self.tables = {k: np.asarray(v, np.float64) for k, v in tables.items()}

    @classmethod
    def load(cls, path: Path = DETECTOR_BIAS_PATH) -> DetectorBias | None:
        if not path.is_file():
            return None
        data = np.load(path)
        return cls({k: data[k] for k in ("mediapipe_dense", "dlib68", "mediapipe68") if k in data})

    def offset(self, table: str, angles: np.ndarray, terms: str = "all") -> np.ndarray | None:
        """(K, 2) expected offset of table ``table``'s points at pose ``angles`` (3,), None for an unknown table.
        ``terms``: "all" pose features, "yaw" (pitch taken as 0) or "constant" (the offset at the frontal pose)."""
        coef = self.tables.get(table)
        if coef is None:
            return None
        angles = np.asarray(angles, np.float64) * {"all": (1, 1, 1), "yaw": (0, 1, 1), "constant": (0, 0, 0)}[terms]
        return coef @ pose_features(angles)[0]


def box_qp(hessian: np.ndarray, gradient: np.ndarray, lower: np.ndarray, upper: np.ndarray,
           start: np.ndarray | None = None) -> np.ndarray:
    """min 1/2 x'Hx - g'x subject to lower <= x <= upper (H positive definite), by an active set from a start.

    Written here because scipy's lsq_linear (BVLS) re-factorises the tall matrix on every step, which is ~100x
    slower for these small (<= a few hundred variables) problems. One variable is released per step, the most
    violating one, for stable convergence.
    """
    n = len(gradient)
    x = np.clip(np.zeros(n) if start is None else np.asarray(start, np.float64), lower, upper)
    at_lower, at_upper = x <= lower, x >= upper
    for _ in range(3 * n + 10):
        free = ~(at_lower | at_upper)
        x[at_lower], x[at_upper] = lower[at_lower], upper[at_upper]
        if free.any():
            fixed = ~free
            rhs = gradient[free] - hessian[np.ix_(free, fixed)] @ x[fixed]
            x[free] = np.linalg.solve(hessian[np.ix_(free, free)], rhs)
        below, above = free & (x < lower - 1e-12), free & (x > upper + 1e-12)
        if below.any() or above.any():
            at_lower |= below
            at_upper |= above
            continue
        grad = hessian @ x - gradient
        release = (at_lower & (grad < -1e-9)) | (at_upper & (grad > 1e-9))
        if not release.any():
            break
        worst = int(np.argmax(np.abs(grad) * release))
        at_lower[worst] = at_upper[worst] = False
    return np.clip(x, lower, upper)


def bounded_least_squares(design: np.ndarray, rhs: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                          linear: np.ndarray | None = None) -> np.ndarray:
    """min ||design x - rhs||^2 + linear . x subject to lower <= x <= upper: `box_qp` on the normal equations.

    The linear term is an L1 penalty on variables bounded below by 0 (sparse expression weights). Single-threaded
    BLAS avoids thread oversubscription on these small matrices.
    """
    with _blas_controller().limit(limits=1):
        gradient = design.T @ rhs
        if linear is not None:
            gradient = gradient - 0.5 * np.asarray(linear, np.float64)
        return box_qp(design.T @ design, gradient, lower, upper)


class MeshPoints:
    """mediapipe's 478 face-mesh points as points on the model surface (affine combinations of 3 vertices, table
    ``msma/data/mediapipe_to_ict.npz`` made by scripts/derive_mediapipe_ict.py), with their bases cached.

    Only for the ICT model the table was derived on; `MeshPoints.for_model` returns None for any other model.
    """

    def __init__(self, model: FaceModel, vertices: np.ndarray, weights: np.ndarray, sigma_px: np.ndarray) -> None:
        self.vertices, self.weights = np.asarray(vertices, np.int64), np.asarray(weights, np.float64)
        self.sigma_px = np.asarray(sigma_px, np.float64)
        flat = torch.as_tensor(self.vertices.reshape(-1), device=model.device)
        cols = (flat[:, None] * 3 + torch.arange(3, device=flat.device)).reshape(-1)
        k = len(self.vertices)

        def combine(basis: torch.Tensor) -> np.ndarray:  # (n, N*3) -> (n, K, 3)
            b = basis[:, cols].cpu().double().numpy().reshape(-1, k, 3, 3)
            return np.einsum("nkjc,kj->nkc", b, self.weights)

        mean = model.mean.cpu().double().numpy()
        self.mean = np.einsum("kjc,kj->kc", mean[self.vertices], self.weights)
        self.identity_basis = combine(model.identity_basis)
        self.expression_basis = combine(model.expression_basis)
        normals = vertex_normals(model.mean[None].double(), model.triangles)[0].cpu().numpy()
        n = np.einsum("kjc,kj->kc", normals[self.vertices], self.weights)
        self.normals = n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-9)

    @classmethod
    def for_model(cls, model: FaceModel) -> MeshPoints | None:
        table = MESH_TABLE_PATH
        if model.info.name != "ict" or not table.is_file():
            return None
        data = np.load(table)
        if int(data["vertices"].max()) >= model.n_vertices:
            return None
        return cls(model, data["vertices"], data["weights"], data["sigma_px"])

    def visible(self, coeffs: Coefficients, camera_distance: float, threshold: float) -> np.ndarray:
        """(K,) bool: the surface at each point faces the camera (cosine above ``threshold``) in this pose."""
        rotation = euler_to_matrix(coeffs.angles[:1].double().cpu())[0].numpy()
        position = self.mean @ rotation.T + coeffs.translation[0].double().cpu().numpy()
        view = np.array([0.0, 0.0, camera_distance]) - position
        view /= np.linalg.norm(view, axis=1, keepdims=True)
        return ((self.normals @ rotation.T) * view).sum(1) > threshold

    def vertices_of(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        return (self.mean + np.einsum("n,nkc->kc", identity, self.identity_basis)
                + np.einsum("n,nkc->kc", expression, self.expression_basis))


def fit_landmarks(
    model: FaceModel,
    landmarks: torch.Tensor | np.ndarray,
    init: Coefficients | None = None,
    settings: LandmarkFitSettings | None = None,
    shared_identity: bool = False,
    valid: np.ndarray | None = None,
    contour: ContourTracker | None = None,
    prior_mean: Coefficients | None = None,
    dense: np.ndarray | None = None,
    mesh_points: MeshPoints | None = None,
    landmark_sources: Sequence[str | None] | None = None,
    detector_bias: DetectorBias | None = None,
) -> Coefficients:
    """Fit pose, identity and expression to 68 crop-pixel landmarks (B, 68, 2), and to mediapipe's 478 mesh points
    ``dense`` (B, 478, 2) crop pixels (NaN rows where an image has no mesh) when given and the model has the table;
    a third column (B, 478, 3) is mediapipe's relative depth in crop pixels (`msma.align.crop_mesh_points`), used
    when ``settings.mesh_depth_sigma_px`` is set.

    ``prior_mean`` (e.g. the network's prediction) moves the Gaussian prior on identity and expression from the
    mean face to that estimate, so the network's shape is kept where the landmarks do not contradict it.
    With ``shared_identity`` all B images are taken as one person: one identity, per-image expression and pose.
    ``valid`` (B, 68) marks landmarks to use (e.g. outside-image points excluded).
    ``landmark_sources`` (B,) names the detector of each image's 68 points ("dlib", "mediapipe", ...): with
    ``settings.detector_bias`` their pose-dependent offsets (`DetectorBias`) are removed at the current pose; the
    mesh points are always mediapipe's. Unknown or None sources (e.g. hand-placed points) are used as given.
    ``detector_bias`` replaces the shipped offset table (``msma/data/detector_bias.npz``).
    """
    settings = settings or LandmarkFitSettings()
    targets = np.asarray(landmarks.detach().cpu() if isinstance(landmarks, torch.Tensor) else landmarks, np.float64)
    batch = targets.shape[0]
    valid = np.ones((batch, 68), bool) if valid is None else np.asarray(valid, bool)
    contour = contour or ContourTracker(model)
    mesh_depth = None
    dense_input = dense
    if dense is not None and settings.use_dense:
        mesh_points = mesh_points or MeshPoints.for_model(model)
        dense = np.asarray(dense, np.float64)
        if mesh_points is None or dense.shape[1] < len(mesh_points.vertices):
            dense = None
        else:
            dense = dense[:, : len(mesh_points.vertices)]
            if dense.shape[2] > 2 and settings.mesh_depth_sigma_px is not None:
                mesh_depth = dense[:, :, 2]
            dense = dense[:, :, :2]
    else:
        dense = None
    coeffs = init.clone() if init is not None else Coefficients.zeros(model, batch)
    with _blas_controller().limit(limits=1):
        regressed = regressed_expressions(model, dense_input, settings)
        bias = (detector_bias or _detector_bias()) if settings.detector_bias else None
        _landmark_rounds(model, coeffs, targets, valid, contour, settings, shared_identity, init is not None,
                         prior_mean, dense, mesh_points, bias, landmark_sources, mesh_depth, regressed)
    return coeffs


@functools.cache
def _expression_regressor(path: str | None = None):
    from msma.expression_regressor import REGRESSOR_PATH, ExpressionRegressor

    return ExpressionRegressor.load(REGRESSOR_PATH if path is None else path)


def regressed_expressions(model: FaceModel, dense: np.ndarray | None,
                          settings: LandmarkFitSettings) -> np.ndarray | None:
    """(B, n_expression) the learnt regressor's weights from mediapipe's mesh points with depth (B, 478, 3), NaN rows
    for images without them; None when ``settings`` does not use the regressor or no image has a mesh with depth."""
    used = settings.expression_regressor_prior is not None or settings.expression_regressor_l1_release is not None
    if not used or dense is None or not settings.use_dense:
        return None
    dense = np.asarray(dense, np.float64)
    if dense.ndim != 3 or dense.shape[1] < 478 or dense.shape[2] < 3 or model.n_expression != 53:
        return None
    out = np.full((len(dense), model.n_expression), np.nan)
    for b, points in enumerate(dense[:, :478]):
        if np.isfinite(points).all():
            weights = _expression_regressor(settings.expression_regressor_path).predict(points[:, :2], points[:, 2])
            out[b] = np.where(weights >= settings.expression_regressor_dead_zone, weights, 0.0)
    if settings.expression_regressor_blendshapes is not None:
        unknown = set(settings.expression_regressor_blendshapes) - set(model.expression_names)
        if unknown:
            raise ValueError(f"expression_regressor_blendshapes: not blendshapes of this model: {sorted(unknown)}")
        keep = np.isin(model.expression_names, settings.expression_regressor_blendshapes)
        out[:, ~keep] = np.where(np.isfinite(out[:, ~keep]), 0.0, np.nan)
    return out if np.isfinite(out).any() else None


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """One controller for the process: `threadpool_limits` scans the loaded libraries on every call (~6 ms)."""
    return ThreadpoolController()


_BIAS_TABLES = {"dlib": "dlib68", "mediapipe": "mediapipe68"}  # detector name -> its 68-point offset table


_ASYMMETRY: dict[int, np.ndarray] = {}


def identity_asymmetry(model: FaceModel) -> np.ndarray:
    """(n_identity,) how much each identity coefficient makes the face asymmetric: the diagonal of (I - M) / 2 for
    the mirror map M (`msma.mirror.CoefficientMirror`), 1 for an antisymmetric component and 0 for a symmetric one
    (ICT's components are one or the other; M is then diagonal)."""
    key = id(model.identity_basis)
    if key not in _ASYMMETRY:
        from msma.mirror import CoefficientMirror

        mirror = CoefficientMirror.for_model(model).identity_map.double().numpy()
        _ASYMMETRY[key] = np.clip((1.0 - np.diag(mirror)) / 2.0, 0.0, 1.0)
    return _ASYMMETRY[key]


@functools.cache
def _detector_bias() -> DetectorBias | None:
    return DetectorBias.load()


def expression_l1_scale(model: FaceModel, setting: str | Sequence[float] | None) -> np.ndarray | None:
    """(n_expression,) multipliers of the expression L1 weight for ``LandmarkFitSettings.expression_l1_scale``:
    None for None; for "table" the shipped table and for another string the .npz table at that path, by expression
    name (1 for names it lacks); else the values themselves."""
    if setting is None:
        return None
    if isinstance(setting, str):
        table = _expression_l1_table(str(EXPRESSION_L1_PATH if setting == "table" else Path(setting).resolve()))
        return np.array([table.get(n, 1.0) for n in model.expression_names])
    values = np.asarray(setting, np.float64)
    if values.shape != (model.n_expression,):
        raise ValueError(f"expression_l1_scale has {values.size} values for {model.n_expression} expressions")
    return values


@functools.cache
def _expression_l1_table(path: str) -> dict[str, float]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"expression L1 table {path} is missing (made by scripts/derive_expression_l1.py)")
    data = np.load(path)
    return {str(n): float(v) for n, v in zip(data["names"], data["scale"])}


def _cauchy_row_scale(a_id: np.ndarray, a_exp: np.ndarray, rhs: np.ndarray, coeffs: Coefficients,
                      scale: float) -> np.ndarray:
    """(K,) sqrt of the Cauchy IRLS weight 1 / (1 + (r / scale)^2) of each point of a `_projection_rows` system at
    the current coefficients (r: the point's residual in sigmas, the rows being scaled by 1 / sigma)."""
    residual = (a_id @ coeffs.identity[0].double().cpu().numpy()
                + a_exp @ coeffs.expression[0].double().cpu().numpy() - rhs)
    return 1.0 / np.sqrt(1.0 + (np.hypot(*residual.reshape(2, -1)) / scale) ** 2)


def _expression_pairs(model: FaceModel) -> list[tuple[int, int]]:
    names = model.expression_names
    return [(i, names.index(n[:-2] + "_R")) for i, n in enumerate(names) if n.endswith("_L") and n[:-2] + "_R" in names]


def _solve_group(rows: list[np.ndarray], rhs: list[np.ndarray], centre: np.ndarray, identity_weight: np.ndarray,
                 expression_prior: float, expression_l1: np.ndarray | None, lower: np.ndarray, upper: np.ndarray,
                 identity: np.ndarray | None) -> np.ndarray:
    """One bounded least-squares solve of a group's identity + expressions: the data rows, Gaussian priors around
    ``centre`` (sqrt weights ``identity_weight`` per identity mode, ``expression_prior`` for every expression) and
    an L1 weight per expression variable. ``identity`` given: held fixed, only the expressions are solved."""
    n_id = len(identity_weight)
    prior = np.concatenate([identity_weight, np.full(len(centre) - n_id, np.sqrt(expression_prior))])
    design = np.concatenate(rows + [np.diag(prior)])
    rhs_vec = np.concatenate(rhs + [prior * centre])
    linear = None
    if expression_l1 is not None and np.any(expression_l1 > 0):
        linear = np.concatenate([np.zeros(n_id), expression_l1])
    if identity is None:
        return bounded_least_squares(design, rhs_vec, lower, upper, linear)
    # identity fixed: its columns move to the right-hand side
    rhs_vec = rhs_vec - design[:, :n_id] @ identity
    return np.concatenate([identity, bounded_least_squares(
        design[:, n_id:], rhs_vec, lower[n_id:], upper[n_id:], None if linear is None else linear[n_id:])])


def motion_sigma_scale(expression_basis: np.ndarray, motion_mm: float) -> np.ndarray:
    """Per-point sigma factor sqrt(1 + (m / motion_mm)^2) of the identity stage, m each point's largest displacement
    (mm) under any one blendshape at weight 1; expression_basis (n_exp, K, 3) in model units -> (K,)."""
    motion = np.linalg.norm(expression_basis, axis=-1).max(0) * MODEL_UNITS_TO_MM
    return np.sqrt(1.0 + (motion / motion_mm) ** 2)


def _landmark_rounds(
    model: FaceModel, coeffs: Coefficients, targets: np.ndarray, valid: np.ndarray, contour: ContourTracker,
    settings: LandmarkFitSettings, shared_identity: bool, has_init: bool, prior_mean: Coefficients | None,
    dense: np.ndarray | None, mesh_points: MeshPoints | None, bias: DetectorBias | None = None,
    sources: Sequence[str | None] | None = None, mesh_depth: np.ndarray | None = None,
    regressed: np.ndarray | None = None,
) -> None:
    batch = targets.shape[0]
    raw_targets, raw_dense = targets, dense
    targets, dense = targets.copy(), None if dense is None else dense.copy()
    tables68 = [_BIAS_TABLES.get(s or "") for s in (sources or [None] * batch)]

    def correct(b: int) -> None:  # the detectors' expected offsets at image b's current pose estimate
        if bias is None:
            return
        angles = coeffs.angles[b].double().cpu().numpy()
        terms = settings.detector_bias_terms
        if tables68[b] is not None and (offset := bias.offset(tables68[b], angles, terms)) is not None:
            targets[b] = raw_targets[b] - offset
        if dense is not None and (offset := bias.offset("mediapipe_dense", angles, terms)) is not None:
            dense[b] = raw_dense[b] - offset[: dense.shape[1]]

    if has_init:
        for b in range(batch):
            correct(b)
    n_exp = model.n_expression
    n_id = model.n_identity if settings.identity_modes is None else min(settings.identity_modes, model.n_identity)
    sigma68 = np.full(68, settings.landmark_sigma_px)
    sigma68[:17] *= settings.jaw_sigma_scale
    bounded = model.expression_range is not None
    lower, upper = model.expression_range if bounded else (-np.inf, np.inf)
    has_dense = np.zeros(batch, bool) if dense is None else np.isfinite(dense).all(axis=(1, 2))
    has_depth = has_dense & (np.zeros(batch, bool) if mesh_depth is None else np.isfinite(mesh_depth).all(axis=1))
    if dense is not None:
        sigma_dense = np.maximum(mesh_points.sigma_px * settings.dense_sigma_scale, settings.dense_min_sigma_px)
    scale68 = np.ones((batch, 68))

    def w68_of(b: int) -> float:  # the 68 points' weight beside the mesh points
        return settings.dense_landmark68_weight if has_dense[b] else 1.0

    scale_dense = None if dense is None else np.ones(dense.shape[:2])
    pairs = _expression_pairs(model) if settings.symmetry_prior > 0 else []
    identity_prior_scale = 1.0
    if settings.asymmetric_identity_prior_scale != 1.0:
        identity_prior_scale = 1.0 + (settings.asymmetric_identity_prior_scale - 1.0) * identity_asymmetry(model)[:n_id]
    two_stage = settings.identity_stage_expression_prior is not None and settings.rounds > 1
    l1_scale = expression_l1_scale(model, settings.expression_l1_scale)
    for round_index in range(settings.rounds):
        final = round_index == settings.rounds - 1
        solve_identity = not (two_stage and final)
        identity_stage = two_stage and not final  # the weaker expression priors, uniform L1
        expression_prior, expression_l1 = settings.expression_prior, settings.expression_l1
        if identity_stage:
            expression_prior = settings.identity_stage_expression_prior
            expression_l1 = (settings.expression_l1 if settings.identity_stage_expression_l1 is None
                             else settings.identity_stage_expression_l1)

        def motion_scale(expression_basis: np.ndarray, identity_stage: bool = identity_stage) -> np.ndarray | float:
            if not identity_stage or settings.identity_stage_motion_mm is None:
                return 1.0
            return motion_sigma_scale(expression_basis, settings.identity_stage_motion_mm)

        # pose, per image
        for b in range(batch):
            single = coeffs[b : b + 1]
            identity = single.identity[0].double().cpu().numpy()
            expression = single.expression[0].double().cpu().numpy()
            index = contour.correspondences(model, single) if round_index else contour.landmarks
            points3d = contour.vertices_of(contour.rows(index), identity, expression)
            points2d, keep = targets[b], valid[b].astype(float)
            if has_dense[b]:
                seen = mesh_points.visible(single, model.camera.distance, settings.visibility_threshold)
                points3d = np.concatenate([points3d, mesh_points.vertices_of(identity, expression)])
                points2d = np.concatenate([points2d, dense[b]])
                keep = np.concatenate([keep, seen.astype(float)])
            previous = None
            if has_init or round_index:
                previous = (single.angles[0].cpu().numpy().astype(np.float64),
                            single.translation[0].cpu().numpy().astype(np.float64))
            if settings.pose_weighted:
                # the shape solve's row weights: 1 / sigma, the Cauchy scale of the previous round, visibility
                weights = keep * np.concatenate([scale68[b] * w68_of(b) / sigma68] + (
                    [scale_dense[b] / sigma_dense] if has_dense[b] else []))
                if previous is None:
                    previous = solve_pose(model, points3d, points2d, keep)
                prior_angles = None
                if prior_mean is not None and settings.pose_prior_deg is not None:
                    prior_angles = prior_mean.angles[b].double().cpu().numpy()
                angles, translation = solve_pose_weighted(
                    model, points3d, points2d, weights, previous, prior_angles,
                    None if settings.pose_prior_deg is None else np.deg2rad(settings.pose_prior_deg))
            else:
                angles, translation = solve_pose(model, points3d, points2d, keep, previous)
            coeffs.angles[b] = torch.as_tensor(angles, dtype=coeffs.angles.dtype)
            coeffs.translation[b] = torch.as_tensor(translation, dtype=coeffs.translation.dtype)
            correct(b)

        # shape + expression: one bounded least-squares problem (identity shared or not)
        systems = []
        for b in range(batch):
            single = coeffs[b : b + 1]
            index = contour.correspondences(model, single)
            w68 = w68_of(b)
            motion68 = (motion_scale(contour.expression_basis[:, contour.rows(index)])
                        if settings.identity_stage_motion_points == "all" else 1.0)
            a_id, a_exp, rhs = _linear_system(model, contour, single, index, targets[b], sigma68 / w68 * motion68)
            if round_index:  # robust reweighting from the current residuals
                scale68[b] = _cauchy_row_scale(a_id, a_exp, rhs, single, settings.robust_scale)
            row_scale = np.concatenate([scale68[b], scale68[b]])[:, None]
            mask = np.concatenate([valid[b], valid[b]])
            parts = [(a_id * row_scale)[mask], (a_exp * row_scale)[mask], (rhs * row_scale[:, 0])[mask]]
            if has_dense[b]:
                d_id, d_exp, d_rhs = _projection_rows(model, single, mesh_points.mean, mesh_points.identity_basis,
                                                      mesh_points.expression_basis, dense[b],
                                                      sigma_dense * motion_scale(mesh_points.expression_basis))
                if round_index:
                    scale_dense[b] = _cauchy_row_scale(d_id, d_exp, d_rhs, single, settings.robust_scale)
                seen = mesh_points.visible(single, model.camera.distance, settings.visibility_threshold)
                d_scale = np.concatenate([scale_dense[b], scale_dense[b]])[:, None]
                d_mask = np.concatenate([seen, seen])
                parts = [np.concatenate([parts[0], (d_id * d_scale)[d_mask]]),
                         np.concatenate([parts[1], (d_exp * d_scale)[d_mask]]),
                         np.concatenate([parts[2], (d_rhs * d_scale[:, 0])[d_mask]])]
                if has_depth[b]:
                    z_id, z_exp, z_rhs = _depth_rows(model, single, mesh_points, mesh_depth[b], seen, settings)
                    parts = [np.concatenate([parts[0], z_id]), np.concatenate([parts[1], z_exp]),
                             np.concatenate([parts[2], z_rhs])]
            if n_id < model.n_identity:  # fixed modes: their (current) contribution moves to the right-hand side
                fixed = coeffs.identity[b, n_id:].double().cpu().numpy()
                parts = [parts[0][:, :n_id], parts[1], parts[2] - parts[0][:, n_id:] @ fixed]
            systems.append(tuple(parts))
        groups = [list(range(batch))] if shared_identity else [[b] for b in range(batch)]
        for group in groups:
            rows, rhs_all = [], []
            n_vars = n_id + n_exp * len(group)
            for k, b in enumerate(group):
                a_id, a_exp, rhs = systems[b]
                block = np.zeros((len(rhs), n_vars))
                block[:, :n_id] = a_id
                block[:, n_id + k * n_exp : n_id + (k + 1) * n_exp] = a_exp
                rows.append(block)
                rhs_all.append(rhs)
                if settings.depth_prior > 0:  # identity displacement along this view's axis (model frame)
                    view = euler_to_matrix(coeffs.angles[b : b + 1].double().cpu())[0].numpy()[2]
                    depth_rows = np.einsum("nkc,c->kn", contour.face_identity_mm, view)
                    block = np.zeros((len(depth_rows), n_vars))
                    weight = np.sqrt(settings.depth_prior / len(depth_rows) / len(group))
                    block[:, :n_id] = depth_rows[:, :n_id] * weight
                    rows.append(block)
                    rhs_all.append(np.zeros(len(depth_rows)))
                for left, right in pairs:  # ARKit pairs move together unless the landmarks say otherwise
                    couple = np.zeros((1, n_vars))
                    couple[0, n_id + k * n_exp + left] = np.sqrt(settings.symmetry_prior)
                    couple[0, n_id + k * n_exp + right] = -np.sqrt(settings.symmetry_prior)
                    rows.append(couple)
                    rhs_all.append(np.zeros(1))
            centre = np.zeros(n_vars)
            if prior_mean is not None:
                centre[:n_id] = prior_mean.identity[group, :n_id].double().mean(0).cpu().numpy()
                for k, b in enumerate(group):
                    centre[n_id + k * n_exp : n_id + (k + 1) * n_exp] = prior_mean.expression[b].double().cpu().numpy()
            group_prior, group_l1 = expression_prior, expression_l1
            centred = settings.expression_regressor_prior is not None and (
                final or settings.expression_regressor_identity_stage)
            if centred and regressed is not None and np.isfinite(regressed[group]).all():
                # the learnt regressor's weights as the expressions' prior centre (msma.expression_regressor)
                for k, b in enumerate(group):
                    centre[n_id + k * n_exp : n_id + (k + 1) * n_exp] = regressed[b]
                if final:
                    group_prior, group_l1 = settings.expression_regressor_prior, settings.expression_regressor_l1
            lo = np.concatenate([np.full(n_id, -np.inf), np.full(n_exp * len(group), lower)])
            hi = np.concatenate([np.full(n_id, np.inf), np.full(n_exp * len(group), upper)])
            identity_now = None if solve_identity else coeffs.identity[group[0], :n_id].double().cpu().numpy()
            prior_weight = settings.identity_prior
            if prior_mean is not None and settings.identity_prior_around_estimate is not None:
                prior_weight = settings.identity_prior_around_estimate
            identity_weight = np.sqrt(prior_weight * identity_prior_scale) * np.ones(n_id)
            sparse = bounded and lower >= 0
            per_expression = np.full(n_exp, group_l1)
            if l1_scale is not None and not identity_stage:
                per_expression = per_expression * l1_scale
            l1_all = np.tile(per_expression, len(group))
            release = settings.expression_regressor_l1_release
            if final and release is not None and regressed is not None and np.isfinite(regressed[group]).all():
                # adaptive lasso: the blendshapes the regressor sees lose their L1, the ones it does not keep it
                l1_all = l1_all * np.clip(1.0 - regressed[group].reshape(-1) / release, 0.0, 1.0)
            solution = _solve_group(rows, rhs_all, centre, identity_weight, group_prior,
                                    l1_all if sparse else None, lo, hi, identity_now)
            if final and settings.expression_debias_prior is not None and sparse:
                # relaxed lasso: the sparse priors above chose which blendshapes move; their weights are re-solved
                # with weaker priors, the others held at 0, so the L1 that keeps neutral faces neutral does not
                # also flatten the expressions the landmarks do show
                support = solution[n_id:] > settings.expression_support_threshold
                hi_support = np.concatenate([hi[:n_id], np.where(support, hi[n_id:], lower)])
                solution = _solve_group(rows, rhs_all, centre, identity_weight, settings.expression_debias_prior,
                                        np.full(n_exp * len(group), settings.expression_debias_l1), lo, hi_support,
                                        identity_now)
            for k, b in enumerate(group):
                coeffs.identity[b, :n_id] = torch.as_tensor(solution[:n_id], dtype=coeffs.identity.dtype)
                exp = solution[n_id + k * n_exp : n_id + (k + 1) * n_exp]
                coeffs.expression[b] = torch.as_tensor(exp, dtype=coeffs.expression.dtype)


def refine_photometric(
    model: FaceModel,
    renderer,
    images: torch.Tensor,
    landmarks: torch.Tensor | np.ndarray,
    init: Coefficients,
    settings: PhotometricSettings | None = None,
    shared_identity: bool = False,
    optimise_texture_only: bool = False,
) -> Coefficients:
    """Refine all coefficients against the crop images (B, H, W, 3) float in [0, 1]."""
    settings = settings or PhotometricSettings()
    if model.device.type == "cpu":
        # Small tensors: one intra-op thread is as fast as two and immune to oversubscription, which made
        # each step ~20x slower on a busy 2-core machine.
        with single_torch_thread():
            return _refine_photometric(model, renderer, images, landmarks, init, settings, shared_identity,
                                       optimise_texture_only)
    return _refine_photometric(model, renderer, images, landmarks, init, settings, shared_identity,
                               optimise_texture_only)


def _refine_photometric(
    model: FaceModel, renderer, images: torch.Tensor, landmarks: torch.Tensor | np.ndarray, init: Coefficients,
    settings: PhotometricSettings, shared_identity: bool, optimise_texture_only: bool,
) -> Coefficients:
    device = model.device
    images = images.to(device)
    target_lm = torch.as_tensor(np.asarray(landmarks, np.float32), device=device)
    frozen = {"identity", "expression", "angles", "translation"} if optimise_texture_only else set()
    params = {k: v.detach().clone().to(device).requires_grad_(k not in frozen) for k, v in init.as_dict().items()}
    if shared_identity:
        params["identity"] = params["identity"][:1].detach().clone().requires_grad_("identity" not in frozen)
    trainable = [v for k, v in params.items() if k not in frozen]
    optimiser = torch.optim.Adam(trainable, lr=settings.learning_rate)
    weights = landmark_weights(nose_mouth_weight=20.0, device=device)
    reg = RegularizerWeights()
    skin_faces = model.triangles[model.skin_triangles]
    if settings.face_region_only:
        in_face = torch.zeros(model.n_vertices, dtype=torch.bool, device=device)
        in_face[model.face_vertices] = True
        skin_faces = skin_faces[in_face[skin_faces].all(1)]
    size = settings.resolution
    if tuple(renderer.image_size) != (size, size):
        raise ValueError(f"renderer image_size {renderer.image_size} != photometric resolution {size}")
    if images.shape[1] != size:
        images = torch.nn.functional.interpolate(
            images.permute(0, 3, 1, 2), size=(size, size), mode="area"
        ).permute(0, 2, 3, 1)
    scale = size / model.camera.image_size
    to_pixels = torch.tensor([scale, scale, 1.0], device=device)
    face_index = None
    skin = None  # (B, H, W) photo pixels of skin colour, from the first render's footprint

    def current() -> Coefficients:
        values = dict(params)
        if shared_identity:
            values["identity"] = params["identity"].expand(images.shape[0], -1)
        values["expression"] = model.clamp_expression(values["expression"])
        return Coefficients.from_dict(values)

    iterations = settings.texture_iterations if optimise_texture_only else settings.iterations
    fixed = None  # albedo and lighting alone: the posed shape, its normals and its pixels are computed once
    if optimise_texture_only:
        with torch.no_grad():
            shape = model.geometry(current())
            screen = shape.screen * to_pixels
            face_index = renderer.rasterize(screen, skin_faces).face_index
            fixed = (shape, screen, renderer.fragments_from_face_index(screen, skin_faces, face_index))
    for step in range(iterations):
        optimiser.zero_grad()
        coeffs = current()
        if fixed is not None:
            geometry, screen, fragments = fixed
            colors = model.albedo(coeffs.texture) * sh_irradiance(geometry.camera_normals, coeffs.lighting)
        else:
            geometry = model.geometry(coeffs)
            colors = geometry.colors
            screen = geometry.screen * to_pixels  # continuous coordinates (msma.pixels): resizing is a product
            if face_index is None or step % settings.rasterize_every == 0:
                face_index = renderer.rasterize(screen.detach(), skin_faces).face_index
            fragments = renderer.fragments_from_face_index(screen, skin_faces, face_index)  # differentiable bary
        out = renderer.render_colors(screen, skin_faces, colors, fragments=fragments)
        residual = ((out.image - images) ** 2).sum(-1)  # (B, H, W)
        if skin is None:
            skin = _skin_colour_mask(images, out.mask, settings.skin_colour_tolerance)
        mask = out.mask & skin
        if settings.trim_fraction > 0 and mask.any():
            with torch.no_grad():
                threshold = torch.quantile(residual[mask], 1.0 - settings.trim_fraction)
            mask = mask & (residual <= threshold)
        loss = settings.photometric_weight * photometric_loss(out.image, images, mask)
        # the shared landmark loss in 224-crop pixels, summed over the 68 points (the weight's scale)
        loss = loss + settings.landmark_weight * 68 * landmark_loss(geometry.landmarks2d, target_lm, weights,
                                                                    image_size=1.0)
        loss = loss + settings.regularizer_weight * coefficient_regularizer(coeffs, reg)
        loss = loss + settings.lighting_weight * 1e-3 * lighting_regularizer(coeffs.lighting)
        loss.backward()
        optimiser.step()
    return current().detach()


def _skin_colour_mask(images: torch.Tensor, footprint: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(B, H, W) bool: pixels whose chromaticity is within ``tolerance`` of the median inside the face footprint and
    whose brightness is not far from it (hair, beard, glasses, background and occluders drop out)."""
    with torch.no_grad():
        brightness = images.sum(-1, keepdim=True).clamp_min(1e-3)
        chroma = images / brightness
        out = torch.zeros_like(footprint)
        for b in range(images.shape[0]):
            if not footprint[b].any():
                continue
            centre = chroma[b][footprint[b]].median(0).values
            level = brightness[b][footprint[b]].median()
            close = (chroma[b] - centre).norm(dim=-1) < tolerance
            lit = (brightness[b, ..., 0] > 0.3 * level) & (brightness[b, ..., 0] < 2.5 * level)
            out[b] = close & lit
        return out
