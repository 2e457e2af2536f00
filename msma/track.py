"""Video -> facial performance: per-frame ARKit blendshape weights, head pose and eye gaze, one identity per face.

    from msma.track import FaceTracker
    result = FaceTracker().track_video("clip.mp4")   # TrackResult
    face = result.faces[0]                             # FaceTrack: times, weights (T, 53), angles (T, 3), gaze ...

Pipeline (the time of every stage is in ``TrackResult.timings``):

1. decode (`msma.video`); frames larger than ``max_side`` are downscaled while decoding;
2. landmarks: mediapipe's face mesh in video mode (it tracks from frame to frame and re-detects when it loses the
   face), 478 points with irises; faces are followed over frames by box overlap;
3. identity: a few keyframes per face (the most frontal, most neutral frame of each stretch of the clip, so the
   head's poses over the clip). The person's shape (the rig, ``FaceTrack.identity``) is the photo fitter's with one
   identity shared by the keyframes, as several photos of a person get (`Reconstructor.estimate(shared_identity=
   True)`); the per-frame fit below keeps its own `fit_identity` on its points (the network's estimate as the
   prior, the tracker's weak prior), which absorbs where the video-mode points sit on the face but is a poor shape;
   the photo texture of the rig is unwrapped from the most frontal frame (`Reconstructor.reconstruct_face`);
4. per frame, identity fixed: head pose and the 53 expression weights from mediapipe's 468 mesh points as points on
   the ICT surface with their measured noise (`msma.fit.MeshPoints`, the still fitter's table; eyelid points the
   table seats on the eyeballs are moved onto the lid skin), joint Gauss-Newton steps warm-started from the previous
   frame with the still fitter's priors (L2, sparse L1, left/right symmetry), far-side points dropped and Cauchy
   reweighting (`fit_frame`); ``points="ibug68"`` fits the 68 iBUG points on ICT's landmark vertices instead;
   the mean head-pose offset measured on synthetic clips by `msma.track_calibration` is subtracted;
5. eye gaze: each iris centre back-projected onto the fitted eyeball sphere -> eye yaw / pitch in the fitted head
   frame, relative to the rest direction `msma.track_calibration` measured -> the eyeLook* weights (the landmark fit
   only sees the eyelids), zero within a dead zone of the per-face gaze noise;
6. One-Euro smoothing over time (`msma.smoothing`), restarted after every frame without a face.

Frames where a face is missing keep the last tracked values (the first frames take the first tracked values) and
are marked ``valid = False``. Conventions: angles in radians, ``R = Rz(roll) Ry(yaw) Rx(pitch)`` as everywhere in
the library (+y up, +z towards the camera); eye yaw > 0 turns the eye towards the face's left (+x), pitch > 0 up.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msma.align import estimate_transform, transform_points
from msma.fit import LandmarkFitSettings, _expression_pairs, box_qp
from msma.landmarks.base import FaceLandmarks, NoFaceError, box_from_points, five_points_from_68
from msma.smoothing import OneEuroSettings, smooth_series
from msma.video import VideoDecodeError, VideoFrame, VideoInfo, frame_rate_report, open_video

__all__ = [
    "FaceTrack",
    "FaceTracker",
    "FrameFitter",
    "FrameState",
    "TrackResult",
    "TrackSettings",
    "fit_frame",
    "gaze_to_eye_look",
]

log = logging.getLogger(__name__)

# mediapipe refined face mesh: iris centres (the first iris ring is the face's right eye)
IRIS_CENTRES = (473, 468)  # face's left eye, face's right eye
# eyeLook* weight 1 at this eye rotation (degrees): horizontal, up, down
EYE_LOOK_FULL_DEG = (30.0, 25.0, 25.0)
EYE_LOOK_NAMES = ("eyeLookIn", "eyeLookOut", "eyeLookUp", "eyeLookDown")
BLINK_HOLD = 0.5  # eyes closed more than this: the iris is hidden, keep the previous gaze
EYE_CORNERS = ((263, 362), (33, 133))  # mediapipe mesh: outer and inner corner of the face's left, right eye


_FIT = LandmarkFitSettings  # the still fitter's defaults (class attributes of the dataclass)
MESH_POINTS = 468  # mediapipe's face mesh without the 10 iris points


@dataclass
class TrackSettings:
    max_side: int = 1280  # frames larger than this (pixels) are downscaled for tracking
    max_faces: int = 4  # faces the landmark tracker follows at once
    largest: bool = False  # one track: the largest face of every frame
    keyframes: int = 5  # frames used for the shared identity
    # the person's identity (the rig's shape, FaceTrack.identity) from the keyframes: "still" (the photo fitter, one
    # identity shared by the keyframes) or "tracker" (the per-frame fit's own `fit_identity`, the earlier way); the
    # per-frame fit always uses its own (see FaceTracker._identity)
    identity: str = "still"
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    fit_iterations: int = 2  # joint Gauss-Newton steps per frame (3x on the first frame of a stretch)
    # "mesh": mediapipe's 468 face-mesh points on the ICT surface with their measured noise (`msma.fit.MeshPoints`,
    # the still fitter's table); "ibug68": the 68 iBUG points (mediapipe's fixed mapping) on ICT's landmark vertices
    points: str = "mesh"
    landmark_sigma_px: float = _FIT.landmark_sigma_px  # ibug68: expected landmark noise in the 224 crop
    jaw_sigma_scale: float = _FIT.jaw_sigma_scale
    mesh_sigma_scale: float = _FIT.dense_sigma_scale  # mesh: multiplies each point's measured noise
    mesh_min_sigma_px: float = _FIT.dense_min_sigma_px
    visibility_threshold: float = _FIT.visibility_threshold  # mesh points turned further from the camera are dropped
    robust_scale: float | None = _FIT.robust_scale  # Cauchy reweighting (residuals of this many sigmas count half)
    # priors of the same form as `msma.fit.LandmarkFitSettings` (objective: sum of squared residuals in sigmas + these
    # terms), their own values: the L1 weight was chosen on seed-3000 clips (benchmarks/tracking_tune.py), not on the
    # benchmark's seed 2000, with the L2 weight 16 (the still fitter's, tuned on photos, is stronger since)
    expression_prior: float = 16.0  # weight of ||expression||^2
    # weight of sum(expression): a sparsity prior (weights are >= 0); most weights are 0 most of the time
    expression_l1: float = 64.0
    symmetry_prior: float = _FIT.symmetry_prior  # weight of (w_L - w_R)^2 for the ARKit left/right pairs
    identity_prior: float = 1.0  # weight of ||identity - prior||^2 (the network's estimate when there is one)
    # subtract the mean head-pose offset and eye rest direction measured on synthetic clips (`msma.track_calibration`)
    calibrated: bool = True
    # eye rotations within this of rest give eyeLook weights 0 (gaze noise); None: twice the per-face spread of the
    # rest reading measured by `msma.track_calibration` (0 without a calibration)
    gaze_deadzone_deg: float | None = None
    smoothing: OneEuroSettings | None = field(default_factory=lambda: OneEuroSettings(min_cutoff=1.0, beta=3.0))
    texture: bool = True  # unwrap the photo texture of each face for its rig
    min_frames: int = 3  # tracks seen in fewer frames are dropped (spurious detections)


@dataclass
class FrameState:
    angles: np.ndarray  # (3,) pitch, yaw, roll radians (crop camera)
    translation: np.ndarray  # (3,) model units (crop camera)
    weights: np.ndarray  # (K,)
    residual_px: float = 0.0  # RMS landmark error in the 224 crop


@dataclass
class FaceTrack:
    """One face over the clip; every array has one row per decoded frame (see ``valid``)."""

    index: int
    valid: np.ndarray  # (T,) bool: a face was tracked in this frame
    landmarks68: np.ndarray  # (T, 68, 2) frame pixels (NaN where invalid)
    iris: np.ndarray  # (T, 2, 2) iris centres, face's left and right eye, frame pixels
    crop_matrix: np.ndarray  # (T, 2, 3) frame -> 224 crop (the pose is in the crop camera)
    names: list[str]  # K blendshape names (ICT spelling)
    identity: np.ndarray  # (n_identity,)
    weights_raw: np.ndarray  # (T, K) per-frame fit, unsmoothed
    weights: np.ndarray  # (T, K) smoothed (equal to weights_raw without smoothing)
    angles_raw: np.ndarray  # (T, 3) radians
    angles: np.ndarray
    translation: np.ndarray  # (T, 3) model units, crop camera
    gaze_raw: np.ndarray  # (T, 2, 2) (yaw, pitch) radians of the left and right eye in the head frame
    gaze: np.ndarray
    residual_px: np.ndarray  # (T,) RMS landmark error of the fit, crop pixels
    keyframes: list[int]  # frame indices used for the identity
    camera: object  # msma.face_model.Camera of the 224 crop the pose refers to
    rig: object | None = None  # msma.export_rig.Rig: neutral mesh, blendshapes, texture
    pose_offset: np.ndarray = field(default_factory=lambda: np.zeros(3))  # fitted = reported + offset (radians)

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def quaternions(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, 4) head and (T, 2, 4) eye rotations (x, y, z, w) for the animated GLB."""
        from msma.export_rig import euler_to_quaternion

        gaze = np.zeros((*self.gaze.shape[:2], 3))
        gaze[..., 0] = -self.gaze[..., 1]  # pitch up = rotation about -x for a +z-looking eye
        gaze[..., 1] = self.gaze[..., 0]  # yaw towards +x = rotation about +y
        return euler_to_quaternion(self.angles), euler_to_quaternion(gaze)


@dataclass
class TrackResult:
    source: str
    info: VideoInfo | None
    times: np.ndarray  # (T,) seconds from the first frame
    frame_size: tuple[int, int]  # (width, height) of the processed frames
    scale: float  # processed pixels per source pixel
    fps: float  # median frame rate measured from the timestamps
    variable_frame_rate: bool
    faces: list[FaceTrack]
    complete: bool  # False when decoding failed part-way or the run was interrupted
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def n_frames(self) -> int:
        return len(self.times)

    def tracking_fps(self) -> float:
        """Frames per second of the per-frame work: landmarks + fit + gaze + smoothing (no decode, no identity)."""
        busy = sum(self.timings.get(k, 0.0) for k in ("landmarks", "fit", "smoothing"))
        return self.n_frames / busy if busy > 0 else float("inf")


# --------------------------------------------------------------------------------------------------------------
# per-frame fit with a fixed identity
# --------------------------------------------------------------------------------------------------------------
_FLIP = np.diag([1.0, -1.0, -1.0])  # OpenCV camera (y down, looking down +z) <-> ours (y up, at z = distance)


def _rotation(angles: np.ndarray) -> np.ndarray:
    from msma.export import euler_to_matrix

    return euler_to_matrix(angles)


def _angles(rotation: np.ndarray) -> np.ndarray:
    from msma.face_model import matrix_to_euler

    return matrix_to_euler(rotation)


@dataclass
class PointSet:
    """The tracked 2D points as points on the model surface: their mean-face positions and bases, how far (crop
    pixels, 1 sigma) each tends to be off, and the mean face's normals there (visibility)."""

    mean: np.ndarray  # (P, 3)
    identity_basis: np.ndarray  # (n_identity, P, 3)
    expression_basis: np.ndarray  # (K, P, 3)
    sigma_px: np.ndarray  # (P,)
    name: str
    dense: bool  # mediapipe's first P mesh points (else the 68 iBUG landmarks)
    normals: np.ndarray | None = None  # (P, 3) unit normals of the mean face; None: every point always visible
    pose_offset: np.ndarray = field(default_factory=lambda: np.zeros(3))  # fitted minus true angles, on average

    @classmethod
    def mesh(cls, model, settings: TrackSettings | None = None, mesh_points=None) -> PointSet | None:
        """mediapipe's 468 face-mesh points (no irises: the eyes turn) on the ICT surface: `msma.fit.MeshPoints`,
        the still fitter's table and per-point noise; None for a model without the table."""
        from msma.fit import MeshPoints

        s = settings or TrackSettings()
        mesh = mesh_points if mesh_points is not None else MeshPoints.for_model(model)
        if mesh is None:
            return None
        n = MESH_POINTS
        sigma = np.maximum(mesh.sigma_px[:n] * s.mesh_sigma_scale, s.mesh_min_sigma_px)
        mean, id_basis, exp_basis = mesh.mean[:n].copy(), mesh.identity_basis[:, :n].copy(), \
            mesh.expression_basis[:, :n].copy()
        normals = mesh.normals[:n].copy()
        lids, vertices = _eyelid_vertices(model, mesh, n)
        if len(lids):
            mean[lids], id_basis[:, lids], exp_basis[:, lids] = _bases(model, vertices)
            normals[lids] = _vertex_normals(model)[vertices]
        return cls(mean, id_basis, exp_basis, sigma, "mesh468", True, normals)

    @classmethod
    def ibug68(cls, model, settings: TrackSettings | None = None) -> PointSet:
        """The model's 68 iBUG landmark vertices (jaw points less trusted), as `msma.fit` uses them."""
        s = settings or TrackSettings()
        sigma = np.full(68, s.landmark_sigma_px)
        sigma[:17] *= s.jaw_sigma_scale
        mean, id_basis, exp_basis = _bases(model, model.landmarks68.cpu().numpy().astype(np.int64))
        return cls(mean, id_basis, exp_basis, sigma, "ibug68", False)

    @classmethod
    def for_settings(cls, model, settings: TrackSettings, mesh_points=None) -> PointSet:
        if settings.points not in ("mesh", "ibug68"):
            raise ValueError(f"TrackSettings.points must be 'mesh' or 'ibug68', got {settings.points!r}")
        points = cls.mesh(model, settings, mesh_points) if settings.points == "mesh" else None
        return points if points is not None else cls.ibug68(model, settings)


def _eyelid_vertices(model, mesh, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mesh points the table seats (partly) on the eyeballs -> the skin vertex in front of each on the mean face.

    On renders with open eyes, mediapipe's eyelid-margin points project onto the eyeball just as well as onto the lid
    (`scripts/derive_mediapipe_ict.py` chooses among both), but eyeball vertices do not move with eyeBlink / squint,
    so a blink could not move them: the tracker puts those points on the nearest (x, y) face-skin vertex that is not
    behind them instead.
    """
    from msma.export_rig import eyeball_vertices

    eyes = eyeball_vertices(model)
    if eyes is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lids = np.flatnonzero(np.isin(mesh.vertices[:n], np.concatenate(eyes)).any(1))
    skin = np.setdiff1d(model.face_vertices.cpu().numpy(), np.concatenate(eyes))
    position = model.mean.cpu().double().numpy()[skin]
    vertices = []
    for i in lids:
        p = mesh.mean[i]
        distance = np.linalg.norm(position[:, :2] - p[:2], axis=1) + 1e3 * (position[:, 2] < p[2] - 0.02)
        vertices.append(skin[int(np.argmin(distance))])
    return lids, np.array(vertices, np.int64)


def _vertex_normals(model) -> np.ndarray:
    from msma.face_model import vertex_normals

    return vertex_normals(model.mean[None].double(), model.triangles)[0].cpu().numpy()


def _bases(model, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (P, 3), identity basis (n_id, P, 3) and expression basis (K, P, 3) at the given vertices, float64."""
    import torch

    flat = (vertices[:, None] * 3 + np.arange(3)).reshape(-1)
    with torch.no_grad():
        mean = model.mean[torch.as_tensor(vertices)].cpu().double().numpy()
        id_basis = model.identity_basis[:, flat].cpu().double().numpy().reshape(-1, len(vertices), 3)
        exp_basis = model.expression_basis[:, flat].cpu().double().numpy().reshape(-1, len(vertices), 3)
    return mean, id_basis, exp_basis


def _projection_jacobian(cam: np.ndarray, focal: float, distance: float) -> np.ndarray:
    """d(x, y)/dP for camera-frame points (P, 3) under x = c + f P_x / d, y = c - f P_y / d, d = distance - P_z."""
    depth = distance - cam[:, 2]
    jac = np.zeros((len(cam), 2, 3))
    jac[:, 0, 0] = focal / depth
    jac[:, 0, 2] = focal * cam[:, 0] / depth**2
    jac[:, 1, 1] = -focal / depth
    jac[:, 1, 2] = -focal * cam[:, 1] / depth**2
    return jac


def _rotation_jacobian(dproj: np.ndarray, rotated: np.ndarray) -> np.ndarray:
    """(P, 2, 3) derivative of the projection wrt a small rotation applied on the left (dP = -[R v]x dr)."""
    return np.cross(rotated[:, None, :], dproj)  # a' (-[v]x) = v x a


class FrameFitter:
    """Head pose + expression weights of one face from its tracked 2D points (crop pixels), identity fixed.

    Gauss-Newton on pose and weights together (weights bounded; the still fitter's priors: L2, sparse L1 and
    left/right symmetry), started from PnP on a stretch's first frame and from the previous frame after that, with
    points turned away from the camera dropped and Cauchy-reweighted residuals as in `msma.fit`. It only touches
    the points (``points``: mediapipe's 468 mesh points on the ICT surface by default), so a frame costs a few
    milliseconds.
    """

    def __init__(self, model, identity: np.ndarray, settings: TrackSettings | None = None,
                 points: PointSet | None = None) -> None:
        self.settings = settings or TrackSettings()
        s = self.settings
        self.points = points or PointSet.for_settings(model, s)
        self.expression_basis = self.points.expression_basis
        identity = np.asarray(identity, np.float64).reshape(model.n_identity)
        self.base = self.points.mean + np.tensordot(identity, self.points.identity_basis, axes=1)
        self.n = len(self.expression_basis)
        # (K, P * 3) for the vertices and (P, 3, K) for the Jacobian: plain matrix products, the fit's hot path
        self._basis_flat = np.ascontiguousarray(self.expression_basis.reshape(self.n, -1))
        self._basis_points = np.ascontiguousarray(self.expression_basis.transpose(1, 2, 0))
        cam = model.camera
        self.focal, self.centre, self.distance = float(cam.focal), float(cam.center), float(cam.distance)
        self.camera_matrix = np.array([[cam.focal, 0, cam.center], [0, cam.focal, cam.center], [0, 0, 1]], float)
        sigma = self.points.sigma_px
        self.row_weight = np.concatenate([1.0 / sigma, 1.0 / sigma])
        lo, hi = model.expression_range if model.expression_range is not None else (-np.inf, np.inf)
        self.lower, self.upper = np.full(self.n, float(lo)), np.full(self.n, float(hi))
        # the objective is ||residual / sigma||^2 + priors, as in `msma.fit`; the QP below minimises half of it
        self.prior = s.expression_prior * np.eye(self.n)
        for left, right in (_expression_pairs(model) if s.symmetry_prior > 0 else []):
            self.prior[[left, right], [left, right]] += s.symmetry_prior
            self.prior[[left, right], [right, left]] -= s.symmetry_prior
        self.l1 = 0.5 * s.expression_l1 * np.ones(self.n) if lo >= 0 else np.zeros(self.n)
        self.damping = 1e-4  # Levenberg term on the pose block, relative to its mean curvature

    def vertices(self, weights: np.ndarray) -> np.ndarray:
        return self.base + (weights @ self._basis_flat).reshape(-1, 3)

    def project(self, vertices: np.ndarray, angles: np.ndarray, translation: np.ndarray) -> np.ndarray:
        cam = vertices @ _rotation(angles).T + translation
        depth = self.distance - cam[:, 2]
        return np.stack([self.centre + self.focal * cam[:, 0] / depth, self.centre - self.focal * cam[:, 1] / depth],
                        1)

    def point_weights(self, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray, weights: np.ndarray,
                      robust: bool, projected: np.ndarray | None = None) -> np.ndarray:
        """(P,) row scale of each point: 0 where its surface turns away from the camera, times the square root of
        its Cauchy weight 1 / (1 + (r / robust_scale)^2) at the current fit (r: residual in sigmas).
        ``projected``: the points' (P, 2) projections at this fit, when already computed."""
        s = self.settings
        scale = np.ones(len(self.points.sigma_px))
        if self.points.normals is not None:
            position = self.points.mean @ rotation.T + translation
            view = np.array([0.0, 0.0, self.distance]) - position
            view /= np.linalg.norm(view, axis=1, keepdims=True)
            scale *= ((self.points.normals @ rotation.T) * view).sum(1) > s.visibility_threshold
        if robust and s.robust_scale:
            if projected is None:
                cam = self.vertices(weights) @ rotation.T + translation
                depth = self.distance - cam[:, 2]
                projected = np.stack([self.centre + self.focal * cam[:, 0] / depth,
                                      self.centre - self.focal * cam[:, 1] / depth], 1)
            r = np.linalg.norm(projected - target, axis=1) / self.points.sigma_px
            scale /= np.sqrt(1.0 + (r / s.robust_scale) ** 2)
        return scale

    def solve_pose(self, vertices: np.ndarray, target: np.ndarray, previous: FrameState | None):
        import cv2

        obj, img = np.ascontiguousarray(vertices, np.float64), np.ascontiguousarray(target, np.float64)
        if previous is None:
            ok, rvec, tvec = cv2.solvePnP(obj, img, self.camera_matrix, None, flags=cv2.SOLVEPNP_EPNP)
            if not ok:
                rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [self.distance]])
        else:
            rvec = cv2.Rodrigues(_FLIP @ _rotation(previous.angles))[0]
            tvec = (_FLIP @ previous.translation + np.array([0.0, 0.0, self.distance])).reshape(3, 1)
        ok, rvec, tvec = cv2.solvePnP(obj, img, self.camera_matrix, None, rvec.copy(), tvec.copy(),
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        rotation = _FLIP @ cv2.Rodrigues(rvec)[0]
        return _angles(rotation), _FLIP @ (tvec.ravel() - np.array([0.0, 0.0, self.distance]))

    def gauss_newton_step(self, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                          weights: np.ndarray, robust: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One joint Gauss-Newton step in (small rotation, translation, weights), weights kept in their bounds.

        Alternating pose and expression solves zig-zag (jaw opening and head pitch trade off), so both are
        linearised together: x = c + f P_x / d, y = c - f P_y / d with P = R V(w) + t and d = distance - P_z.
        """
        import cv2

        rotated_v = self.vertices(weights) @ rotation.T
        cam = rotated_v + translation
        dproj = _projection_jacobian(cam, self.focal, self.distance)
        j_w = np.matmul(dproj @ rotation, self._basis_points)  # (P, 2, K): d(pixel)/d(weight)
        jac = np.concatenate([_rotation_jacobian(dproj, rotated_v), dproj, j_w], axis=2)  # (P, 2, 6 + K)
        depth = self.distance - cam[:, 2]
        projected = np.concatenate([self.centre + self.focal * cam[:, 0] / depth,
                                    self.centre - self.focal * cam[:, 1] / depth])
        point_scale = self.point_weights(target, rotation, translation, weights, robust,
                                         projected.reshape(2, -1).T)
        row_weight = self.row_weight * np.concatenate([point_scale, point_scale])
        design = np.concatenate([jac[:, 0], jac[:, 1]]) * row_weight[:, None]
        current = np.concatenate([np.zeros(6), weights])
        rhs = (np.concatenate([target[:, 0], target[:, 1]]) - projected) * row_weight + design @ current
        hessian = design.T @ design
        hessian[6:, 6:] += self.prior
        hessian[:6, :6] += self.damping * np.eye(6) * max(np.trace(hessian[:6, :6]) / 6, 1e-9)
        lower = np.concatenate([np.full(6, -np.inf), self.lower])
        upper = np.concatenate([np.full(6, np.inf), self.upper])
        gradient = design.T @ rhs
        gradient[6:] -= self.l1
        z = box_qp(hessian, gradient, lower, upper, start=current)
        rotation = cv2.Rodrigues(z[:3].reshape(3, 1))[0] @ rotation
        return rotation, translation + z[3:6], z[6:]

    def fit(self, target: np.ndarray, previous: FrameState | None = None) -> FrameState:
        """Pose + weights for the crop points (P, 2); ``previous`` (the last frame) warm-starts the solve."""
        target = np.asarray(target, np.float64)
        if previous is None:
            weights = np.zeros(self.n)
            angles, translation = self.solve_pose(self.vertices(weights), target, None)
            iterations = 3 * self.settings.fit_iterations
        else:
            weights, angles, translation = previous.weights.copy(), previous.angles, previous.translation
            iterations = self.settings.fit_iterations
        rotation = _rotation(angles)
        for step in range(max(1, iterations)):
            # robust weights need a fit to measure residuals against: not on a cold start's first step
            rotation, translation, weights = self.gauss_newton_step(target, rotation, translation, weights,
                                                                    robust=previous is not None or step > 0)
        angles = _angles(rotation)
        residual = self.project(self.vertices(weights), angles, translation) - target
        return FrameState(angles, translation, weights, float(np.sqrt((residual**2).sum(1).mean())))


def fit_frame(fitter: FrameFitter, crop_landmarks: np.ndarray, previous: FrameState | None) -> FrameState:
    """The tracker's one fitting call: pose + expression of a frame with the identity fixed (swap it here)."""
    return fitter.fit(crop_landmarks, previous)


def fit_identity(model, targets: np.ndarray, points: PointSet, settings: TrackSettings | None = None,
                 prior_identity: np.ndarray | None = None, iterations: int = 6) -> tuple[np.ndarray, list[FrameState]]:
    """One identity shared by K keyframes (K, P, 2 crop pixels) with per-keyframe pose and expression.

    Joint Gauss-Newton over identity (Gaussian prior around ``prior_identity``, e.g. the network's estimate),
    every keyframe's pose and bounded weights; the same points and camera as `FrameFitter`.
    """
    import cv2

    s = settings or TrackSettings()
    targets = np.asarray(targets, np.float64)
    k_frames, n_id, n_exp = len(targets), model.n_identity, model.n_expression
    prior_identity = np.zeros(n_id) if prior_identity is None else np.asarray(prior_identity, np.float64)
    identity = prior_identity.copy()
    mean, id_basis, exp_basis = points.mean, points.identity_basis, points.expression_basis
    states = [FrameFitter(model, identity, s, points).fit(t) for t in targets]
    fitter = FrameFitter(model, identity, s, points)
    block = 6 + n_exp
    n_vars = n_id + k_frames * block
    lower = np.full(n_vars, -np.inf)
    upper = np.full(n_vars, np.inf)
    for k in range(k_frames):
        lower[n_id + k * block + 6 : n_id + (k + 1) * block] = fitter.lower
        upper[n_id + k * block + 6 : n_id + (k + 1) * block] = fitter.upper
    for _ in range(iterations):
        rows, rhs_all = [], []
        current = np.zeros(n_vars)
        current[:n_id] = identity
        for k, (target, state) in enumerate(zip(targets, states)):
            rotation = _rotation(state.angles)
            verts = mean + np.tensordot(identity, id_basis, axes=1) + np.tensordot(state.weights, exp_basis, axes=1)
            rotated_v = verts @ rotation.T
            cam = rotated_v + state.translation
            dproj = _projection_jacobian(cam, fitter.focal, fitter.distance)
            j_id = np.einsum("lij,nlj->lin", dproj, id_basis @ rotation.T)
            j_w = np.einsum("lij,klj->lik", dproj, exp_basis @ rotation.T)
            design = np.zeros((2 * len(mean), n_vars))
            local = np.concatenate([_rotation_jacobian(dproj, rotated_v), dproj, j_w], axis=2)
            design[:, :n_id] = np.concatenate([j_id[:, 0], j_id[:, 1]])
            design[:, n_id + k * block : n_id + (k + 1) * block] = np.concatenate([local[:, 0], local[:, 1]])
            fitter.base = mean + np.tensordot(identity, id_basis, axes=1)
            point_scale = fitter.point_weights(target, rotation, state.translation, state.weights, robust=True)
            row_weight = fitter.row_weight * np.concatenate([point_scale, point_scale])
            design *= row_weight[:, None]
            current[n_id + k * block + 6 : n_id + (k + 1) * block] = state.weights
            depth = fitter.distance - cam[:, 2]
            projected = np.concatenate([fitter.centre + fitter.focal * cam[:, 0] / depth,
                                        fitter.centre - fitter.focal * cam[:, 1] / depth])
            rows.append(design)
            rhs_all.append((np.concatenate([target[:, 0], target[:, 1]]) - projected) * row_weight)
        design = np.concatenate(rows)
        rhs = np.concatenate(rhs_all) + design @ current
        hessian = design.T @ design
        gradient = design.T @ rhs
        hessian[:n_id, :n_id] += s.identity_prior * np.eye(n_id)
        gradient[:n_id] += s.identity_prior * prior_identity
        for k in range(k_frames):
            pose = slice(n_id + k * block, n_id + k * block + 6)
            weights = slice(n_id + k * block + 6, n_id + (k + 1) * block)
            hessian[weights, weights] += fitter.prior
            gradient[weights] -= fitter.l1
            hessian[pose, pose] += fitter.damping * np.eye(6) * max(np.trace(hessian[pose, pose]) / 6, 1e-9)
        z = box_qp(hessian, gradient, lower, upper, start=current)
        identity = z[:n_id]
        for k, state in enumerate(states):
            base = n_id + k * block
            rotation = cv2.Rodrigues(z[base : base + 3].reshape(3, 1))[0] @ _rotation(state.angles)
            states[k] = FrameState(_angles(rotation), state.translation + z[base + 3 : base + 6],
                                   z[base + 6 : base + block])
    return identity, states


# --------------------------------------------------------------------------------------------------------------
# gaze
# --------------------------------------------------------------------------------------------------------------
@dataclass
class EyeModel:
    centres: np.ndarray  # (2, 3) eyeball centres (face's left, right), model frame
    radius: np.ndarray  # (2,) radius of the visible front of each eyeball (where the iris is)
    rest: np.ndarray  # (2, 2) (yaw, pitch) of each eye's rest direction in the head frame

    @classmethod
    def from_model(cls, model, identity: np.ndarray) -> EyeModel | None:
        import torch

        from msma.export_rig import eyeball_vertices, sphere_fit

        eyes = eyeball_vertices(model)
        if eyes is None:
            return None
        with torch.no_grad():
            neutral = model(torch.as_tensor(np.asarray(identity, np.float32))[None],
                            torch.zeros(1, model.n_expression))[0].numpy().astype(np.float64)
        centres, radii, rest = [], [], []
        for eye in eyes:
            centre, _ = sphere_fit(neutral[eye])
            offset = neutral[eye] - centre
            distance = np.linalg.norm(offset, axis=1)
            front = offset[:, 2] > 0.9 * distance  # the cornea / iris cap
            centres.append(centre)
            radii.append(float(distance[front].mean() if front.any() else distance.max()))
            rest.append((0.0, 0.0))  # looking along the head's +z (the mesh's pupil axis turns 3.6 deg outward)
        return cls(np.array(centres), np.array(radii), np.array(rest))

    def gaze(self, fitter: FrameFitter, state: FrameState, iris_crop: np.ndarray,
             head_angles: np.ndarray | None = None, observed: np.ndarray | None = None) -> np.ndarray:
        """(2, 2) (yaw, pitch) of each eye in the head frame, relative to its rest axis, from the iris centres
        (2, 2) in crop pixels: each iris centre's camera ray meets the fitted eyeball sphere. ``head_angles``
        (default: the fit's) give the head frame the gaze is expressed in. With ``observed`` (the frame's points,
        crop pixels) the iris is first moved by the fit's local error at that eye's two corners, so the gaze is
        read relative to the eye corners seen in the image, not to where the whole-face fit put the eye."""
        rotation = _rotation(state.angles)
        head = rotation if head_angles is None else _rotation(head_angles)
        iris_crop = np.array(iris_crop, np.float64)
        if observed is not None and fitter.points.dense:
            fitted = fitter.project(fitter.vertices(state.weights), state.angles, state.translation)
            for e, corners in enumerate(EYE_CORNERS):
                iris_crop[e] -= (observed[list(corners)] - fitted[list(corners)]).mean(0)
        origin = np.array([0.0, 0.0, fitter.distance])
        out = np.zeros((2, 2))
        for e in range(2):
            centre = rotation @ self.centres[e] + state.translation
            u, v = iris_crop[e]
            direction = np.array([(u - fitter.centre) / fitter.focal, -(v - fitter.centre) / fitter.focal, -1.0])
            direction /= np.linalg.norm(direction)
            oc = origin - centre
            b = float(direction @ oc)
            disc = b * b - float(oc @ oc) + self.radius[e] ** 2
            s = -b - math.sqrt(disc) if disc >= 0 else -b  # nearest hit, else the closest approach
            point = origin + s * direction
            g = head.T @ (point - centre)
            g /= max(np.linalg.norm(g), 1e-12)
            out[e] = (math.atan2(g[0], g[2]), math.atan2(g[1], math.hypot(g[0], g[2])))
        return out - self.rest


def gaze_to_eye_look(gaze: np.ndarray, full_deg: tuple[float, float, float] = EYE_LOOK_FULL_DEG,
                     deadzone_deg: float = 0.0) -> dict[str, float]:
    """(2, 2) (yaw, pitch) radians of the face's left and right eye -> the 8 eyeLook* weights (ICT names).

    Looking towards the face's left (yaw > 0) is "out" for the left eye and "in" for the right eye. Rotations within
    ``deadzone_deg`` of the rest direction give 0 (a soft threshold, like the fit's sparsity prior on the other
    weights); weight 1 is still reached at ``full_deg``.
    """
    horizontal, up, down = np.radians(full_deg)
    dead = np.radians(deadzone_deg)

    def weight(angle: float, full: float) -> float:
        return float(np.clip((angle - dead) / max(full - dead, 1e-6), 0, 1))

    out = {}
    for e, side in enumerate(("_L", "_R")):
        yaw, pitch = gaze[e]
        outward = yaw if side == "_L" else -yaw
        out["eyeLookOut" + side] = weight(outward, horizontal)
        out["eyeLookIn" + side] = weight(-outward, horizontal)
        out["eyeLookUp" + side] = weight(pitch, up)
        out["eyeLookDown" + side] = weight(-pitch, down)
    return out


# --------------------------------------------------------------------------------------------------------------
# landmarks over frames
# --------------------------------------------------------------------------------------------------------------
class VideoLandmarker:
    """mediapipe face mesh in video mode on RGB frames -> list of (478, 2) point sets in frame pixels."""

    def __init__(self, max_faces: int, min_detection_confidence: float, min_tracking_confidence: float) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mediapipe as mp

            self.mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = self.mesh.process(np.ascontiguousarray(image))
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y) for p in face.landmark], np.float64) * (w, h) - 0.5
            if len(pts) >= 478 and np.all(np.isfinite(pts)):
                faces.append(pts)
        return faces

    def close(self) -> None:
        self.mesh.close()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def frontal_score(landmarks68: np.ndarray) -> float:
    """Higher for frontal, level, neutral-mouthed faces (keyframe choice): 0 is ideal, negative is worse."""
    lm = landmarks68
    eyes = (lm[36:42].mean(0), lm[42:48].mean(0))
    interocular = max(float(np.linalg.norm(eyes[1] - eyes[0])), 1e-6)
    mid = (eyes[0] + eyes[1]) / 2
    yaw = abs(float(lm[30, 0] - mid[0])) / interocular
    roll = abs(math.atan2(eyes[1][1] - eyes[0][1], eyes[1][0] - eyes[0][0]))
    mouth = float(np.linalg.norm(lm[66] - lm[62])) / interocular
    return -(yaw + 0.5 * roll + mouth)


@dataclass
class _Keyframe:
    score: float
    frame: int
    crop: np.ndarray  # (224, 224, 3) aligned crop
    crop_landmarks: np.ndarray  # (68, 2)
    crop_dense: np.ndarray  # (478, 2) mesh points (with irises) in the crop


class _KeyframePool:
    """The best-scoring frame of every time bin (bins double in length when there are too many), and the best
    full frame overall (for the texture)."""

    def __init__(self, capacity: int = 24, bin_s: float = 0.25) -> None:
        self.capacity, self.bin_s = capacity, bin_s
        self.bins: dict[int, _Keyframe] = {}
        self.best: tuple[float, int, np.ndarray, FaceLandmarks] | None = None

    def offer(self, time_s: float, frame: int, score: float, make: Callable[[], _Keyframe]) -> None:
        key = int(time_s // self.bin_s)
        if key not in self.bins or self.bins[key].score < score:
            self.bins[key] = make()
        while len(self.bins) > self.capacity:
            self.bin_s *= 2
            merged: dict[int, _Keyframe] = {}
            for old_key, kf in self.bins.items():
                new_key = old_key // 2
                if new_key not in merged or merged[new_key].score < kf.score:
                    merged[new_key] = kf
            self.bins = merged

    def offer_full(self, score: float, frame: int, image: np.ndarray, detection: FaceLandmarks) -> None:
        if self.best is None or score > self.best[0]:
            self.best = (score, frame, image, detection)

    def choose(self, k: int) -> list[_Keyframe]:
        frames = [self.bins[key] for key in sorted(self.bins)]
        if len(frames) <= k:
            return frames
        picks = np.unique(np.round(np.linspace(0, len(frames) - 1, k)).astype(int))
        return [frames[i] for i in picks]


@dataclass
class _RawTrack:
    pool: _KeyframePool
    landmarks: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (68, 2)
    dense: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (468, 2) float32 mesh points
    iris: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (2, 2)
    box: np.ndarray | None = None
    last_frame: int = -1
    area: float = 0.0


# --------------------------------------------------------------------------------------------------------------
# the tracker
# --------------------------------------------------------------------------------------------------------------
class FaceTracker:
    """Video -> `TrackResult`. ``reconstructor`` (an `msma.api.Reconstructor`) estimates identities and textures;
    one with default settings is built on first use (only when a face was found)."""

    def __init__(self, reconstructor=None, settings: TrackSettings | None = None) -> None:
        self._reconstructor = reconstructor
        self.settings = settings or TrackSettings()
        if self.settings.identity not in ("still", "tracker"):
            raise ValueError(f"TrackSettings.identity must be 'still' or 'tracker', got {self.settings.identity!r}")

    @property
    def reconstructor(self):
        if self._reconstructor is None:
            from msma.api import Reconstructor

            self._reconstructor = Reconstructor()
        return self._reconstructor

    def track_video(self, path: str | os.PathLike, progress: bool = True) -> TrackResult:
        """Track every face of a video file. Raises `msma.video.VideoError` for unusable files and
        `NoFaceError` when no frame shows a face; decoding errors part-way keep the frames before them."""
        with open_video(path, max_side=self.settings.max_side) as video:
            info = video.info
            messages = []
            if info.scale < 1.0:
                messages.append(f"frames downscaled from {info.width}x{info.height} by {info.scale:.3f} for tracking")
            result = self.track_frames(iter(video), source=str(path), info=info, progress=progress,
                                       total=info.frame_count or None, messages=messages)
        declared = info.frame_count or (round(info.duration * info.fps) if info.duration and info.fps else 0)
        if result.complete and declared and result.n_frames < 0.9 * declared - 1:
            result.messages.append(f"decoded {result.n_frames} frames but {path} declares about {declared}: the file "
                                   f"may be truncated; the decoded frames are kept")
        return result

    def track_frames(self, frames: Iterable[VideoFrame], source: str = "frames", info: VideoInfo | None = None,
                     progress: bool = True, total: int | None = None, messages: list[str] | None = None,
                     scale: float | None = None) -> TrackResult:
        """Track an iterable of `VideoFrame` (RGB uint8, increasing times)."""
        from tqdm import tqdm

        s = self.settings
        messages = list(messages or [])
        timings = {"decode": 0.0, "landmarks": 0.0, "identity": 0.0, "texture": 0.0, "fit": 0.0, "smoothing": 0.0}
        landmarker = VideoLandmarker(s.max_faces, s.min_detection_confidence, s.min_tracking_confidence)
        template = self._template()
        tracks: list[_RawTrack] = []
        times: list[float] = []
        frame_size = (0, 0)
        complete = True
        iterator: Iterator[VideoFrame] = iter(frames)
        bar = tqdm(total=total, desc="landmarks", unit="frame", disable=not progress, leave=False)
        try:
            while True:
                start = time.perf_counter()
                try:
                    frame = next(iterator)
                except StopIteration:
                    break
                except VideoDecodeError as error:
                    messages.append(f"{error}; the frames before it are kept")
                    complete = False
                    break
                timings["decode"] += time.perf_counter() - start
                image = frame.image
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise ValueError(f"frame {frame.index}: expected uint8 RGB (H, W, 3), got {image.dtype} "
                                     f"{image.shape}")
                index = len(times)
                times.append(frame.time)
                frame_size = (image.shape[1], image.shape[0])
                start = time.perf_counter()
                faces = landmarker(image)
                timings["landmarks"] += time.perf_counter() - start
                self._assign(tracks, faces, index, frame.time, image, template)
                bar.update(1)
        except KeyboardInterrupt:
            messages.append(f"interrupted after {len(times)} frames; the frames before it are kept")
            complete = False
        finally:
            bar.close()
            landmarker.close()
        n = len(times)
        if n == 0:
            raise NoFaceError(f"{source}: no frames to track")
        times_arr = np.asarray(times, np.float64)
        fps, vfr = frame_rate_report(times_arr)
        if vfr:
            messages.append(f"variable frame rate (median {fps:.2f} fps): frame timestamps are used as recorded")
        tracks = [t for t in tracks if len(t.landmarks) >= min(s.min_frames, n)]
        if s.largest and len(tracks) > 1:
            tracks = [max(tracks, key=lambda t: t.area)]
        if not tracks:
            raise NoFaceError(f"{source}: no face found in any of its {n} frames")
        results = []
        for k, raw in enumerate(sorted(tracks, key=lambda t: -t.area)):
            results.append(self._solve_track(k, raw, times_arr, timings, progress, messages))
        for face in results:
            lost = n - face.n_valid
            if lost:
                messages.append(f"face {face.index}: no face in {lost} of {n} frames (values held from the nearest "
                                f"tracked frame, valid = False there)")
        scale = info.scale if info is not None else (scale or 1.0)
        return TrackResult(source, info, times_arr, frame_size, scale, fps or (info.fps if info else 0.0), vfr, results,
                           complete, messages, timings)

    # ---------------------------------------------------------------------------------------------- helpers
    def _template(self) -> np.ndarray:
        if self._reconstructor is not None:
            return self._reconstructor.template
        return _mean_face_template()

    def _assign(self, tracks: list[_RawTrack], faces: list[np.ndarray], index: int, time_s: float, image: np.ndarray,
                template: np.ndarray) -> None:
        from msma.landmarks.mapping import mesh_to_68

        s = self.settings
        candidates = []
        for dense in faces:
            lm = mesh_to_68(dense, contour=False)  # fixed surface points, like the mesh itself
            box = box_from_points(lm)
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            if area <= 1:
                continue
            candidates.append((area, lm, dense, box))
        if not candidates:
            return
        candidates.sort(key=lambda c: -c[0])
        if s.largest:
            candidates = candidates[:1]
            if not tracks:
                tracks.append(_RawTrack(_KeyframePool()))
            matches = [(0, candidates[0])]
        else:
            matches, used = [], set()
            for cand in candidates:
                best, best_iou = None, 0.2
                for t, track in enumerate(tracks):
                    if t in used or track.box is None or track.last_frame == index:
                        continue
                    overlap = _iou(track.box, cand[3])
                    if overlap > best_iou:
                        best, best_iou = t, overlap
                if best is None:
                    tracks.append(_RawTrack(_KeyframePool()))
                    best = len(tracks) - 1
                used.add(best)
                matches.append((best, cand))
        for t, (area, lm, dense, box) in matches:
            track = tracks[t]
            track.landmarks[index] = lm
            track.dense[index] = dense[:468].astype(np.float32)
            track.iris[index] = self._iris(dense, lm)
            track.box, track.last_frame = box, index
            track.area += area
            score = frontal_score(lm)

            def make(lm=lm, score=score, dense=dense) -> _Keyframe:
                import cv2

                matrix = estimate_transform(five_points_from_68(lm), template)
                crop = cv2.warpAffine(image, matrix, (224, 224), flags=cv2.INTER_AREA if matrix[0, 0] < 1 else
                                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                return _Keyframe(score, index, crop, transform_points(lm, matrix), transform_points(dense, matrix))

            track.pool.offer(time_s, index, score, make)
            if self.settings.texture:
                track.pool.offer_full(score, index, image, FaceLandmarks(box, lm, 1.0, "mediapipe", dense))

    @staticmethod
    def _iris(dense: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """Iris centres ordered (face's left eye, face's right eye) by the nearer 68-point eye."""
        left_eye, right_eye = lm[42:48].mean(0), lm[36:42].mean(0)
        a, b = dense[IRIS_CENTRES[0]], dense[IRIS_CENTRES[1]]
        keep = np.linalg.norm(a - left_eye) + np.linalg.norm(b - right_eye)
        swap = np.linalg.norm(b - left_eye) + np.linalg.norm(a - right_eye)
        return np.stack([a, b] if keep <= swap else [b, a])

    def _identity(self, raw: _RawTrack, points: PointSet, timings: dict[str, float]):
        """(the person's identity, the per-frame fit's identity, keyframe indices) from the keyframes (frames spread
        over the clip, so over the head's poses).

        The per-frame fit's identity is `fit_identity` on the tracker's own points (the network's estimate as the
        prior): with the tracker's weak identity prior it absorbs where mediapipe's video-mode points sit on this
        face, which keeps the per-frame weights neutral, but as a shape it was worse than the mean face on
        out-of-model faces (benchmarks/results/sfm_video_*.md). The person's identity (``identity="still"``) is
        the photo fitter's, one identity shared by the keyframes (`Reconstructor.estimate(shared_identity=True)`:
        mediapipe's mesh and 68 points, the detector-offset correction and the photo priors), what several photos
        of a person get; ``"tracker"`` reports the per-frame fit's identity as the person's (the earlier way)."""
        start = time.perf_counter()
        rec = self.reconstructor
        keyframes = raw.pool.choose(self.settings.keyframes)
        crops = np.stack([k.crop for k in keyframes])
        predicted = rec.predict(crops) if rec.network is not None else None
        prior = None if predicted is None else predicted.identity.mean(0).double().cpu().numpy()
        targets = np.stack([k.crop_dense[:468] if points.dense else k.crop_landmarks for k in keyframes])
        tracking, _ = fit_identity(rec.model, targets, points, self.settings, prior_identity=prior)
        person = tracking
        if self.settings.identity == "still":  # the network methods reuse the prediction above as their prior
            coeffs = rec.estimate(crops, np.stack([k.crop_landmarks for k in keyframes]), shared_identity=True,
                                  crop_dense=np.stack([k.crop_dense for k in keyframes]), photometric=False,
                                  landmark_sources=["mediapipe"] * len(keyframes), prior=predicted)
            person = coeffs.identity[0].double().cpu().numpy()
        timings["identity"] += time.perf_counter() - start
        return person, tracking, [k.frame for k in keyframes]

    def _rig(self, raw: _RawTrack, identity: np.ndarray, timings: dict[str, float], messages: list[str]):
        from msma.export_rig import Rig

        model = self.reconstructor.model
        texture = uv = uv_index = None
        colors = None
        if self.settings.texture and raw.pool.best is not None:
            start = time.perf_counter()
            _, frame, image, detection = raw.pool.best
            try:
                face = self.reconstructor.reconstruct_face(image, detection)
                texture, uv, uv_index = face.texture, face.uv, face.face_uv_index
                colors = np.clip(face.vertex_colors, 0, 1)
            except (ValueError, RuntimeError) as error:  # the rig stays untextured
                messages.append(f"texture from frame {frame} failed ({error}); the rig is untextured")
            timings["texture"] += time.perf_counter() - start
        return Rig.from_model(model, identity=identity, texture=texture, uv=uv, face_uv_index=uv_index,
                              vertex_colors=colors if texture is None else None)

    def _solve_track(self, k: int, raw: _RawTrack, times: np.ndarray, timings: dict[str, float], progress: bool,
                     messages: list[str]) -> FaceTrack:
        from tqdm import tqdm

        s = self.settings
        model = self.reconstructor.model
        template = self.reconstructor.template
        points = PointSet.for_settings(model, s, getattr(self.reconstructor, "mesh_points", None))
        calibration = _calibration(model, points) if s.calibrated else None
        if calibration is not None:
            points.pose_offset = calibration.pose_offset
        identity, tracking_identity, keyframes = self._identity(raw, points, timings)
        rig = self._rig(raw, identity, timings, messages)
        n, kn = len(times), model.n_expression
        names = list(model.expression_names)
        fitter = FrameFitter(model, tracking_identity, s, points)
        eyes = EyeModel.from_model(model, tracking_identity)
        if eyes is not None and calibration is not None:
            eyes.rest = calibration.gaze_rest.copy()
        deadzone = s.gaze_deadzone_deg
        if deadzone is None:
            deadzone = 2 * math.degrees(calibration.gaze_spread) if calibration is not None else 0.0
        valid = np.zeros(n, bool)
        landmarks = np.full((n, 68, 2), np.nan)
        iris = np.full((n, 2, 2), np.nan)
        matrices = np.zeros((n, 2, 3))
        weights = np.zeros((n, kn))
        angles = np.zeros((n, 3))
        translation = np.zeros((n, 3))
        gaze = np.zeros((n, 2, 2))
        residual = np.full(n, np.nan)
        look_index = {name: names.index(name) for name in names if name.startswith(EYE_LOOK_NAMES)}
        blink = [names.index(b) for b in ("eyeBlink_L", "eyeBlink_R")] if "eyeBlink_L" in names else None
        previous: FrameState | None = None
        previous_frame = -2
        previous_gaze = np.zeros((2, 2))
        start = time.perf_counter()
        for i in tqdm(sorted(raw.landmarks), desc=f"fitting face {k}", unit="frame", disable=not progress,
                      leave=False):
            lm = raw.landmarks[i]
            matrix = estimate_transform(five_points_from_68(lm), template)
            observed = transform_points(raw.dense[i] if points.dense else lm, matrix)
            state = fit_frame(fitter, observed, previous if previous_frame == i - 1 else None)
            valid[i], landmarks[i], iris[i], matrices[i] = True, lm, raw.iris[i], matrix
            head = state.angles - points.pose_offset
            weights[i], angles[i], translation[i], residual[i] = state.weights, head, state.translation, \
                state.residual_px
            if eyes is not None:
                closed = blink is not None and max(state.weights[blink[0]], state.weights[blink[1]]) > BLINK_HOLD
                g = previous_gaze if closed else eyes.gaze(fitter, state, transform_points(raw.iris[i], matrix),
                                                           observed=observed)
                gaze[i] = previous_gaze = g
            previous, previous_frame = state, i
        timings["fit"] += time.perf_counter() - start

        start = time.perf_counter()
        segments = np.cumsum(~valid)  # a new segment after every missing frame
        weights_raw, angles_raw, gaze_raw = weights.copy(), angles.copy(), gaze.copy()
        if eyes is not None:
            _apply_eye_look(weights_raw, gaze_raw, valid, look_index, deadzone)
        if s.smoothing is not None:
            idx = np.flatnonzero(valid)
            packed = np.concatenate([weights[idx], angles[idx], translation[idx], gaze[idx].reshape(-1, 4)], 1)
            smoothed = smooth_series(packed, times[idx], s.smoothing, segments[idx])
            weights[idx] = np.clip(smoothed[:, :kn], fitter.lower, fitter.upper)
            angles[idx] = smoothed[:, kn : kn + 3]
            translation[idx] = smoothed[:, kn + 3 : kn + 6]
            gaze[idx] = smoothed[:, kn + 6 :].reshape(-1, 2, 2)
        if eyes is not None:
            _apply_eye_look(weights, gaze, valid, look_index, deadzone)
        for array in (weights_raw, weights, angles_raw, angles, translation, gaze_raw, gaze, matrices):
            _hold(array, valid)
        timings["smoothing"] += time.perf_counter() - start
        if rig is not None:
            rig.weights = weights[np.flatnonzero(valid)[0]]
        return FaceTrack(k, valid, landmarks, iris, matrices, names, identity, weights_raw, weights, angles_raw,
                         angles, translation, gaze_raw, gaze, residual, keyframes, model.camera, rig,
                         points.pose_offset.copy())


def _calibration(model, points: PointSet):
    """`msma.track_calibration`'s offsets for these points (measured on ICT renders: None for other models)."""
    from msma.track_calibration import TrackCalibration

    if getattr(getattr(model, "info", None), "name", None) != "ict":
        return None
    return TrackCalibration.load("mesh" if points.dense else "ibug68")


def _apply_eye_look(weights: np.ndarray, gaze: np.ndarray, valid: np.ndarray, look_index: dict[str, int],
                    deadzone_deg: float) -> None:
    for i in np.flatnonzero(valid):
        for name, value in gaze_to_eye_look(gaze[i], deadzone_deg=deadzone_deg).items():
            if name in look_index:
                weights[i, look_index[name]] = value


def _hold(array: np.ndarray, valid: np.ndarray) -> None:
    """Fill invalid rows in place with the last valid row (rows before the first valid one: the first valid row)."""
    idx = np.flatnonzero(valid)
    if len(idx) == 0 or len(idx) == len(valid):
        return
    source = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1))
    source[source < 0] = idx[0]
    array[:] = array[source]


def _mean_face_template() -> np.ndarray:
    from msma.face_model import FaceModel

    return FaceModel.ict().five_point_template()


def track_video(path: str | os.PathLike, out_dir: str | os.PathLike | None = None, **settings) -> TrackResult:
    """Convenience: track ``path`` with `TrackSettings(**settings)`; with ``out_dir`` also write every output."""
    tracker = FaceTracker(settings=TrackSettings(**settings))
    result = tracker.track_video(path)
    if out_dir is not None:
        from msma.track_export import export_performance

        export_performance(result, Path(out_dir), video_path=path)
    return result
