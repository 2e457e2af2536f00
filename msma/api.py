"""The public API: one photo in, one `FaceReconstruction` per face out.

    from msma import Reconstructor
    result = Reconstructor()("photo.jpg")
    result.faces[0].export("out/", formats=("glb", "obj", "ply", "json"))
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from msma.align import AlignedFace, align_face, crop_mesh_points, stack_mesh_points, transform_points
from msma.assets import resolve_local_file
from msma.defaults import (  # noqa: F401 - re-exported; DEFAULT_METHOD ("auto") is set in msma/defaults.py
    DEFAULT_METHOD,
    DEFAULT_WEIGHTS_NAME,
    METHODS,
    REPO_WEIGHTS_DIR,
    WEIGHTS_ENV,
    WEIGHTS_REPO_ENV,
)
from msma.face_model import (
    MODEL_UNITS_TO_MM,
    Coefficients,
    FaceModel,
    load_face_model,
)
from msma.fit import (
    ContourTracker,
    LandmarkFitSettings,
    MeshPoints,
    PhotometricSettings,
    fit_landmarks,
    refine_photometric,
)
from msma.image_io import ImageSource, load_image
from msma.landmarks import FaceLandmarks, NoFaceError, detect_faces
from msma.shading import shaded_in_photo as _shaded_render

log = logging.getLogger(__name__)


def resolve_weights_path(weights: str | os.PathLike | None = None) -> Path | None:
    """Explicit path, ``MSMA_WEIGHTS``, the repo's ``weights/``, then ``MSMA_WEIGHTS_REPO`` on the Hub; else None."""
    local = resolve_local_file(weights, WEIGHTS_ENV, REPO_WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME, "network weights")
    if local is not None:
        return local
    repo_id = os.environ.get(WEIGHTS_REPO_ENV)
    if repo_id:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo_id, filename=DEFAULT_WEIGHTS_NAME))
    return None


@dataclass
class HeadPose:
    pitch: float  # degrees
    yaw: float
    roll: float
    translation: np.ndarray  # (3,) model units (decimetres)

    @classmethod
    def from_coefficients(cls, coeffs: Coefficients) -> HeadPose:
        pitch, yaw, roll = np.rad2deg(coeffs.angles[0].cpu().numpy()).tolist()
        return cls(pitch, yaw, roll, coeffs.translation[0].cpu().numpy().copy())

    def as_dict(self) -> dict[str, float]:
        return {"pitch": self.pitch, "yaw": self.yaw, "roll": self.roll}


@dataclass
class FaceReconstruction:
    """One reconstructed face. Arrays are numpy; coordinates of 2D points are photo pixels."""

    index: int
    method: str
    box: np.ndarray  # (4,)
    detected_landmarks: np.ndarray  # (68, 2)
    fitted_landmarks: np.ndarray  # (68, 2)
    coefficients: Coefficients  # batch of 1, CPU
    vertices: np.ndarray  # (N, 3) model frame, identity + expression
    neutral_vertices: np.ndarray  # (N, 3) identity only
    projected: np.ndarray  # (N, 3) photo x, y and camera depth
    vertex_colors: np.ndarray  # (N, 3) float, albedo x lighting
    faces: np.ndarray  # (F, 3)
    uv: np.ndarray | None
    face_uv_index: np.ndarray | None
    texture: np.ndarray | None  # (S, S, 3) uint8 unwrapped from the photo
    blendshapes: dict[str, float]
    pose: HeadPose
    alignment: AlignedFace
    detector: str
    timings: dict[str, float] = field(default_factory=dict)
    # the model's blendshape offsets (K, N, 3) model units, and its eyeball vertices: what `rig` needs
    expression_basis: np.ndarray | None = None
    eyeball_vertices: tuple[np.ndarray, np.ndarray] | None = None
    # (F,) bool: triangles of the narrow face region (what the overlay draws; scalp, neck and ears hid the photo)
    face_triangles: np.ndarray | None = None

    @property
    def landmark_error_px(self) -> float:
        """Mean distance between fitted and detected landmarks, photo pixels."""
        return float(np.linalg.norm(self.fitted_landmarks - self.detected_landmarks, axis=1).mean())

    def mesh(self, neutral: bool = False):
        from msma.export import MeshData

        return MeshData(
            vertices=self.neutral_vertices if neutral else self.vertices,
            faces=self.faces,
            uv=self.uv,
            face_uv_index=self.face_uv_index,
            texture=self.texture,
            vertex_colors=np.clip(self.vertex_colors, 0, 1),
            unit_m=MODEL_UNITS_TO_MM / 1000.0,
        )

    def rig(self):
        """`msma.export_rig.Rig`: the neutral mesh, every blendshape as vertex offsets, the fitted weights."""
        from msma.export_rig import Rig

        if self.expression_basis is None:
            raise ValueError("this reconstruction carries no expression basis, so it cannot be rigged")
        return Rig(self.mesh(neutral=True), self.expression_basis, list(self.blendshapes),
                   np.array(list(self.blendshapes.values())), eyes=self.eyeball_vertices)

    def export(self, out_dir: str | os.PathLike, stem: str = "face", formats: Sequence[str] = ("glb", "obj", "ply",
               "json"), rigged: bool = True) -> dict[str, Path]:
        """Write the face in ``formats``; ``glb`` is the rigged face (ARKit morph targets, fitted weights as its
        pose) unless ``rigged=False`` or no blendshapes are available, then the static posed mesh."""
        from msma.export import export_all

        pose = np.deg2rad([self.pose.pitch, self.pose.yaw, self.pose.roll])
        rig = self.rig() if rigged and self.expression_basis is not None else None
        return export_all(self.mesh(), out_dir, stem=stem, formats=formats, blendshapes=self.blendshapes,
                          pose=(pose, self.pose.translation), rig=rig)


@dataclass
class ReconstructionResult:
    image: np.ndarray  # (H, W, 3) uint8 photo as processed (EXIF-rotated, possibly downscaled)
    faces: list[FaceReconstruction]
    timings: dict[str, float]
    source_scale: float = 1.0  # processed pixels per original pixel

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[FaceReconstruction]:
        return iter(self.faces)

    def __getitem__(self, index: int) -> FaceReconstruction:
        return self.faces[index]

    def overlay(self, alpha: float = 0.45, wireframe: bool = False) -> np.ndarray:
        """The photo with every reconstructed mesh (shaded) and its landmarks drawn over it."""
        from msma.overlay import draw_overlay

        out = self.image
        for face in self.faces:
            render_rgb, render_mask = _shaded_render(face, out.shape[:2])
            drawn = face.faces if face.face_triangles is None else face.faces[face.face_triangles]
            out = draw_overlay(out, face.projected[:, :2], drawn, landmarks68=face.fitted_landmarks,
                               detected_landmarks68=face.detected_landmarks, alpha=alpha, render_rgb=render_rgb,
                               render_mask=render_mask, wireframe=wireframe, legend=face is self.faces[-1])
        return out


@dataclass
class PhotoFailure:
    """A photo `Reconstructor.reconstruct_many` could not reconstruct (``errors="return"``), in its place."""

    index: int  # position in the input
    source: str  # what the input was (a path, or a description of the array / bytes)
    error: Exception
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


@dataclass
class FaceEstimate:
    """One face of `Reconstructor.estimate_many`: what a table row needs, without meshes or texture."""

    index: int
    method: str
    detection: FaceLandmarks
    alignment: AlignedFace
    coefficients: Coefficients  # batch of 1, CPU, expression clamped to the model's range
    fitted_landmarks: np.ndarray  # (68, 2) photo pixels
    blendshapes: dict[str, float]
    pose: HeadPose
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def landmark_error_px(self) -> float:
        """Mean distance between fitted and detected landmarks, photo pixels."""
        return float(np.linalg.norm(self.fitted_landmarks - self.detection.landmarks68, axis=1).mean())


@dataclass
class PhotoEstimate:
    """Every face of one photo as `Reconstructor.estimate_many` estimated it."""

    index: int  # position in the input
    source: str
    image: np.ndarray  # (H, W, 3) uint8 photo as processed
    faces: list[FaceEstimate]
    timings: dict[str, float]
    source_scale: float = 1.0


@dataclass
class _StagedPhoto:
    index: int
    source: str
    image: np.ndarray
    scale: float
    detections: list[FaceLandmarks]
    aligned: list[AlignedFace]
    timings: dict[str, float]


def _describe_source(image: ImageSource) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"<array {image.shape}>"
    return f"<{type(image).__name__}>"


class Reconstructor:
    """Photo -> 3D faces.

    method: ``"network"`` (MSMA network alone, fastest), ``"network+refine"`` (network estimate, then landmark and
    photometric fitting with the network as prior), ``"fitting"`` (analysis by synthesis from the mean face) or
    ``"auto"`` (`DEFAULT_METHOD`, fitting: network+refine is a little closer on the SFM renders but separates people
    far worse on real photos; docs/ACCURACY.md).
    ``flip_test``: the network also sees each crop flipped left-right and its mirrored answer is averaged in
    (test-time augmentation, twice the network's time; `msma.mirror`).
    """

    def __init__(
        self,
        method: str = "auto",
        weights: str | os.PathLike | None = None,
        face_model: str | FaceModel | None = None,
        detector: str = "auto",
        device: str = "cpu",
        texture_size: int = 512,
        photometric: bool = True,
        photometric_settings: PhotometricSettings | None = None,
        landmark_settings: LandmarkFitSettings | None = None,
        max_side: int = 4096,
        flip_test: bool = False,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' requested but CUDA is not available")
        self.device = torch.device(device)
        self.model = face_model if isinstance(face_model, FaceModel) else load_face_model(face_model)
        self.model = self.model.to(self.device)
        self.detector = detector
        self.texture_size = texture_size
        self.photometric = photometric
        self.photometric_settings = photometric_settings or PhotometricSettings()
        self.landmark_settings = landmark_settings or LandmarkFitSettings()
        self.max_side = max_side
        self.flip_test = flip_test
        self._mirror = None
        self.template = self.model.five_point_template()
        self.contour = ContourTracker(self.model)
        self.mesh_points = MeshPoints.for_model(self.model)
        self.weights_path = resolve_weights_path(weights)
        self.network = None
        self.prior_trust = None
        if self.weights_path is not None and method != "fitting":
            from msma.net import load_checkpoint
            from msma.net.trust import load_trust

            self.network = load_checkpoint(self.weights_path, device=str(self.device)).eval()
            self._check_network_matches_model()
            self.prior_trust = load_trust(self.weights_path)
        if method == "auto":
            method = DEFAULT_METHOD
        if method.startswith("network") and self.network is None:
            raise FileNotFoundError(
                f"method {method!r} needs network weights: none in {REPO_WEIGHTS_DIR}, ${WEIGHTS_ENV} or "
                f"${WEIGHTS_REPO_ENV}; pass weights=PATH or use method='fitting'"
            )
        self.method = method
        self._renderer = None
        self._unwrapper = None

    def _check_network_matches_model(self) -> None:
        cfg = self.network.config
        expected = (self.model.n_identity, self.model.n_expression, self.model.n_texture)
        found = (cfg.n_identity, cfg.n_expression, cfg.n_texture)
        if expected != found:
            raise ValueError(
                f"network weights {self.weights_path} predict (identity, expression, texture) = {found} "
                f"coefficients but the face model {self.model.info.name} has {expected}"
            )

    def describe(self) -> dict[str, str]:
        from msma.landmarks import available_detectors
        from msma.render import pytorch3d_available

        return {
            "face_model": f"{self.model.info.name} ({self.model.n_vertices} vertices, {self.model.info.licence})",
            "weights": str(self.weights_path) if self.network is not None else "none (fitting only)",
            "network trust": ("-" if self.prior_trust is None else f"identity {self.prior_trust.identity:g}, "
                              f"expression {self.prior_trust.expression:g} ({self.prior_trust.source})"),
            "method": self.method,
            "detector": f"{self.detector} (available: {', '.join(available_detectors())})",
            "device": str(self.device),
            "renderer": "pytorch3d" if pytorch3d_available() and self.device.type == "cuda" else "pure torch",
        }

    @property
    def renderer(self):
        if self._renderer is None:
            from msma.render import Renderer

            self._renderer = Renderer(self.photometric_settings.resolution)
        return self._renderer

    @property
    def unwrapper(self):
        if self._unwrapper is None:
            from msma.texture import TextureUnwrapper

            self._unwrapper = TextureUnwrapper(self.model, texture_size=self.texture_size)
        return self._unwrapper

    # ----------------------------------------------------------------------------------------------- public
    def __call__(
        self, image: ImageSource, largest_only: bool = False, max_faces: int | None = None, texture: bool = True
    ) -> ReconstructionResult:
        """Reconstruct every face in a photo (largest first). Raises `NoFaceError` when there is none."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        from msma.image_io import load_image_with_scale

        loaded = load_image_with_scale(image, max_side=self.max_side)
        photo = loaded.image
        timings["load"] = time.perf_counter() - start
        start = time.perf_counter()
        detections = detect_faces(photo, detector=self.detector)
        timings["detect"] = time.perf_counter() - start
        if not detections:
            name = image if isinstance(image, (str, os.PathLike)) else "the image"
            raise NoFaceError(f"no face found in {name}")
        if largest_only:
            detections = detections[:1]
        if max_faces is not None:
            detections = detections[:max_faces]
        faces = [self.reconstruct_face(photo, det, index=i, texture=texture) for i, det in enumerate(detections)]
        for face in faces:
            for key, value in face.timings.items():
                timings[key] = timings.get(key, 0.0) + value
        return ReconstructionResult(photo, faces, timings, source_scale=getattr(loaded, "scale", 1.0))

    def reconstruct_face(
        self, photo: np.ndarray, detection: FaceLandmarks, index: int = 0, texture: bool = True,
        method: str | None = None,
    ) -> FaceReconstruction:
        """Reconstruct one detected face of a photo."""
        method = method or self.method
        timings: dict[str, float] = {}
        start = time.perf_counter()
        aligned = align_face(photo, detection.five_points(), template=self.template)
        crop_landmarks = transform_points(detection.landmarks68, aligned.matrix)
        crop_dense = None if detection.dense is None else crop_mesh_points(detection, aligned.matrix)[None]
        timings["align"] = time.perf_counter() - start
        coeffs = self.estimate(aligned.image, crop_landmarks[None], method=method, timings=timings,
                               crop_dense=crop_dense, landmark_sources=[detection.detector])
        start = time.perf_counter()
        face = self._build_result(photo, detection, aligned, coeffs, method, index, texture)
        timings["texture"] = time.perf_counter() - start
        face.timings = timings
        return face

    def estimate(
        self, crops: np.ndarray, crop_landmarks: np.ndarray, method: str | None = None,
        timings: dict[str, float] | None = None, shared_identity: bool = False, crop_dense: np.ndarray | None = None,
        prior: Coefficients | None = None, photometric: bool | None = None,
        landmark_sources: Sequence[str | None] | None = None,
    ) -> Coefficients:
        """Coefficients for aligned crops (B, 224, 224, 3) uint8 with their landmarks (B, 68, 2) and, when the
        detector gave them, mediapipe's mesh points (B, 478, 2) in crop pixels (NaN rows for images without).
        ``prior``: the network's coefficients for these crops when already computed (network methods only);
        ``photometric`` overrides the reconstructor's setting for this call; ``landmark_sources`` (B,) the detector
        that gave each image's 68 points (its pose-dependent offsets are removed, `msma.fit.DetectorBias`)."""
        method = method or self.method
        timings = {} if timings is None else timings
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if method.startswith("network"):
            if prior is None:
                start = time.perf_counter()
                prior = self.predict(crops)
                timings["network"] = time.perf_counter() - start
            if method == "network":
                return prior
        else:
            prior = None
        start = time.perf_counter()
        coeffs = fit_landmarks(self.model, crop_landmarks, init=prior, settings=self.landmark_settings,
                               shared_identity=shared_identity, contour=self.contour, prior_mean=prior,
                               dense=crop_dense, mesh_points=self.mesh_points, landmark_sources=landmark_sources)
        if prior is not None:  # keep the network's albedo and lighting as the photometric starting point
            coeffs.texture, coeffs.lighting = prior.texture.clone(), prior.lighting.clone()
        timings["fit_landmarks"] = time.perf_counter() - start
        if self.photometric if photometric is None else photometric:
            start = time.perf_counter()
            images = torch.as_tensor(crops, dtype=torch.float32, device=self.device) / 255.0
            coeffs = refine_photometric(self.model, self.renderer, images, crop_landmarks,
                                        coeffs.to(self.device), self.photometric_settings,
                                        shared_identity=shared_identity,
                                        optimise_texture_only=not self.photometric_settings.refine_shape)
            timings["photometric"] = time.perf_counter() - start
        return coeffs.to("cpu")

    @torch.no_grad()
    def predict(self, crops: np.ndarray, raw: bool = False) -> Coefficients:
        """Network coefficients for aligned crops (B, 224, 224, 3) uint8: identity and expression scaled by the
        weights' calibrated trust (`msma.net.trust`; ``raw`` skips that and returns the network's outputs)."""
        if self.network is None:
            raise RuntimeError("no network weights loaded")
        images = torch.as_tensor(np.asarray(crops), dtype=torch.float32, device=self.device).permute(0, 3, 1, 2)
        images = images / 255.0
        size = self.network.config.image_size
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                                     antialias=True)
        out = self.network(images)
        coeffs = Coefficients.from_dict({k: v.float() for k, v in out.items()}).to("cpu")
        if self.flip_test:  # average with the mirrored answer for the flipped crops (`msma.mirror`)
            if self._mirror is None:
                from msma.mirror import CoefficientMirror

                self._mirror = CoefficientMirror.for_model(self.model)
            flipped = self.network(images.flip(-1))
            flipped = Coefficients.from_dict({k: v.float() for k, v in flipped.items()}).to("cpu")
            coeffs = self._mirror.average(coeffs, flipped)
        return coeffs if raw or self.prior_trust is None else self.prior_trust.apply(coeffs)

    def reconstruct_many(
        self, images: Iterable[ImageSource], batch_size: int = 16, largest_only: bool = False,
        max_faces: int | None = None, texture: bool = True, errors: str = "raise",
        mixed_precision: bool | None = None,
    ) -> Iterator[ReconstructionResult | PhotoFailure]:
        """Reconstruct many photos: one `ReconstructionResult` per photo, in input order, as each batch finishes.

        `estimate_many` (batched detection -> network -> landmark fit) followed by the meshes, colours and (with
        ``texture``) the texture of every face; each face comes out as `__call__` makes it. See `estimate_many`
        for ``batch_size``, ``errors`` and ``mixed_precision``.
        """
        for item in self.estimate_many(images, batch_size=batch_size, largest_only=largest_only,
                                       max_faces=max_faces, errors=errors, mixed_precision=mixed_precision):
            yield item if isinstance(item, PhotoFailure) else self.build_result(item, texture=texture)

    def build_result(self, estimate: PhotoEstimate, texture: bool = True) -> ReconstructionResult:
        """The full `ReconstructionResult` (meshes, colours, texture) of a `PhotoEstimate`."""
        faces, timings = [], dict(estimate.timings)
        for face in estimate.faces:
            start = time.perf_counter()
            built = self._build_result(estimate.image, face.detection, face.alignment, face.coefficients,
                                       face.method, face.index, texture)
            built.timings = {**face.timings, "texture": time.perf_counter() - start}
            timings["texture"] = timings.get("texture", 0.0) + built.timings["texture"]
            faces.append(built)
        return ReconstructionResult(estimate.image, faces, timings, source_scale=estimate.source_scale)

    def estimate_many(
        self, images: Iterable[ImageSource], batch_size: int = 16, largest_only: bool = False,
        max_faces: int | None = None, errors: str = "raise", mixed_precision: bool | None = None,
    ) -> Iterator[PhotoEstimate | PhotoFailure]:
        """Coefficients, pose, blendshapes and fitted landmarks of every face of many photos (no meshes), one
        `PhotoEstimate` per photo in input order, as each batch finishes.

        Photos are taken ``batch_size`` at a time: each is decoded and detected (the detectors take one image), then
        the faces of the whole batch are aligned and estimated together (one network forward pass, one landmark fit
        over all faces, which treats each face on its own). The photometric refinement of ``"fitting"`` /
        ``"network+refine"`` runs face by face because its trimmed loss is shared by the faces it is given. Batched
        stages' timings are shared equally among the batch's faces.

        ``errors="raise"`` raises the first failure (like `__call__`, e.g. `NoFaceError`); ``errors="return"``
        yields a `PhotoFailure` in the failed photo's place and carries on. ``mixed_precision`` (default: on for
        CUDA) runs the network under float16 autocast (bfloat16 on CPU); the fitter always runs in float32.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        chunk: list[tuple[int, ImageSource]] = []
        for index, image in enumerate(images):
            chunk.append((index, image))
            if len(chunk) == batch_size:
                yield from self._estimate_chunk(chunk, largest_only, max_faces, errors, mixed_precision)
                chunk = []
        if chunk:
            yield from self._estimate_chunk(chunk, largest_only, max_faces, errors, mixed_precision)

    def _estimate_chunk(
        self, chunk: list[tuple[int, ImageSource]], largest_only: bool, max_faces: int | None, errors: str,
        mixed_precision: bool | None,
    ) -> list[PhotoEstimate | PhotoFailure]:
        from msma.image_io import load_image_with_scale

        out: list[PhotoEstimate | PhotoFailure | None] = []
        staged: dict[int, _StagedPhoto] = {}  # position in the chunk -> detected and aligned photo
        for slot, (index, image) in enumerate(chunk):
            timings: dict[str, float] = {}
            try:
                start = time.perf_counter()
                loaded = load_image_with_scale(image, max_side=self.max_side)
                timings["load"] = time.perf_counter() - start
                start = time.perf_counter()
                detections = detect_faces(loaded.image, detector=self.detector)
                timings["detect"] = time.perf_counter() - start
                if not detections:
                    raise NoFaceError(f"no face found in {_describe_source(image)}")
                detections = detections[:1] if largest_only else detections
                detections = detections if max_faces is None else detections[:max_faces]
                start = time.perf_counter()
                aligned = [align_face(loaded.image, d.five_points(), template=self.template) for d in detections]
                timings["align"] = time.perf_counter() - start
            except Exception as error:  # noqa: BLE001 - errors="return" turns any failure of one photo into a row
                if errors == "raise":
                    raise
                out.append(PhotoFailure(index, _describe_source(image), error, timings))
                continue
            staged[slot] = _StagedPhoto(index, _describe_source(image), loaded.image, loaded.scale, detections,
                                        aligned, timings)
            out.append(None)
        if staged:
            try:
                self._estimate_staged(list(staged.items()), out, mixed_precision)
            except Exception:
                if errors == "raise":
                    raise
                # one bad face must not fail its whole batch: redo its photos one by one, keeping failures apart
                for slot, photo in staged.items():
                    try:
                        self._estimate_staged([(slot, photo)], out, mixed_precision)
                    except Exception as error:  # noqa: BLE001
                        out[slot] = PhotoFailure(photo.index, photo.source, error, photo.timings)
        return out  # type: ignore[return-value] - every slot is filled

    def _estimate_staged(self, staged: list[tuple[int, _StagedPhoto]], out: list, mixed_precision: bool | None,
                         ) -> None:
        """Estimate the faces of several detected photos in one batch and put a `PhotoEstimate` per photo in out."""
        faces_of = [(photo, k) for _, photo in staged for k in range(len(photo.detections))]
        crops = np.stack([photo.aligned[k].image for photo, k in faces_of])
        crop_lms = np.stack([transform_points(photo.detections[k].landmarks68, photo.aligned[k].matrix)
                             for photo, k in faces_of])
        crop_dense = stack_mesh_points([photo.detections[k] for photo, k in faces_of],
                                       [photo.aligned[k].matrix for photo, k in faces_of])
        batch_timings: dict[str, float] = {}
        prior = None
        if self.method.startswith("network"):
            use_amp = self.device.type == "cuda" if mixed_precision is None else mixed_precision
            start = time.perf_counter()
            amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
            with torch.autocast(self.device.type, dtype=amp_dtype) if use_amp else nullcontext():
                prior = self.predict(crops)
            batch_timings["network"] = time.perf_counter() - start
        # the landmark fit vectorised over the batch, the photometric refinement face by face (see estimate_many)
        coeffs = self.estimate(crops, crop_lms, timings=batch_timings, crop_dense=crop_dense, prior=prior,
                               photometric=False,
                               landmark_sources=[photo.detections[k].detector for photo, k in faces_of])
        if self.method != "network" and self.photometric:
            start = time.perf_counter()
            parts = []
            for i in range(len(faces_of)):
                images = torch.as_tensor(crops[i : i + 1], dtype=torch.float32, device=self.device) / 255.0
                parts.append(refine_photometric(
                    self.model, self.renderer, images, crop_lms[i : i + 1], coeffs[i : i + 1].to(self.device),
                    self.photometric_settings, optimise_texture_only=not self.photometric_settings.refine_shape,
                ).to("cpu"))
            coeffs = Coefficients.from_dict({k: torch.cat([p.as_dict()[k] for p in parts])
                                             for k in parts[0].as_dict()})
            batch_timings["photometric"] = time.perf_counter() - start
        coeffs.expression = self.model.clamp_expression(coeffs.expression)
        # the same fitted-landmark definition as `_build_result` (far-side jaw on the silhouette)
        crop_fitted = [self.contour.project(self.model, coeffs[i : i + 1]) for i in range(len(coeffs.identity))]
        share = {key: value / len(faces_of) for key, value in batch_timings.items()}
        names = self.model.expression_names
        first = 0
        for slot, photo in staged:
            faces = []
            for k, (detection, aligned) in enumerate(zip(photo.detections, photo.aligned)):
                i = first + k
                single = coeffs[i : i + 1].clone()
                faces.append(FaceEstimate(
                    index=k, method=self.method, detection=detection, alignment=aligned, coefficients=single,
                    fitted_landmarks=transform_points(crop_fitted[i], aligned.inverse),
                    blendshapes=dict(zip(names, single.expression[0].tolist())),
                    pose=HeadPose.from_coefficients(single),
                    timings={"align": photo.timings["align"] / len(photo.detections), **share},
                ))
            first += len(photo.detections)
            timings = dict(photo.timings)
            for key, value in share.items():
                timings[key] = value * len(faces)
            out[slot] = PhotoEstimate(photo.index, photo.source, photo.image, faces, timings, photo.scale)

    def reconstruct_person(self, images: Sequence[ImageSource], texture: bool = True) -> list[FaceReconstruction]:
        """Several photos of one person: the largest face of each, fitted with one shared identity."""
        photos, detections = [], []
        for image in images:
            photo = load_image(image, max_side=self.max_side)
            found = detect_faces(photo, detector=self.detector)
            if not found:
                raise NoFaceError(f"no face found in {image if isinstance(image, (str, Path)) else 'an image'}")
            photos.append(photo)
            detections.append(found[0])
        return self.reconstruct_person_from_detections(photos, detections, texture=texture)

    def reconstruct_person_from_detections(
        self, photos: Sequence[np.ndarray], detections: Sequence[FaceLandmarks], texture: bool = True,
        method: str | None = None,
    ) -> list[FaceReconstruction]:
        """One face per photo (already detected), all of one person: one shared identity, per-photo expression/pose."""
        aligned = [align_face(p, d.five_points(), template=self.template) for p, d in zip(photos, detections)]
        crop_lms = [transform_points(d.landmarks68, a.matrix) for d, a in zip(detections, aligned)]
        dense = stack_mesh_points(detections, [a.matrix for a in aligned])
        method = method or self.method
        method = method if method != "network" else "network+refine"
        coeffs = self.estimate(np.stack([a.image for a in aligned]), np.stack(crop_lms), method=method,
                               shared_identity=True, crop_dense=dense,
                               landmark_sources=[d.detector for d in detections])
        return [
            self._build_result(photos[i], detections[i], aligned[i], coeffs[i : i + 1], method, i, texture)
            for i in range(len(photos))
        ]

    # ------------------------------------------------------------------------------------------- internals
    def _eyeball_vertices(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not hasattr(self, "_eyes"):
            from msma.export_rig import eyeball_vertices

            self._eyes = eyeball_vertices(self.model)
        return self._eyes

    @torch.no_grad()
    def _build_result(
        self, photo: np.ndarray, detection: FaceLandmarks, aligned: AlignedFace, coeffs: Coefficients,
        method: str, index: int, texture: bool,
    ) -> FaceReconstruction:
        model = self.model
        coeffs = coeffs.to(self.device)
        coeffs.expression = model.clamp_expression(coeffs.expression)
        geometry = model.geometry(coeffs)
        neutral = model(coeffs.identity, torch.zeros_like(coeffs.expression))
        screen = geometry.screen[0].cpu().numpy()
        projected = np.concatenate([transform_points(screen[:, :2], aligned.inverse), screen[:, 2:]], axis=1)
        fitted = transform_points(self.contour.project(model, coeffs), aligned.inverse)
        colors = geometry.colors[0].clamp(0, 1).cpu().numpy()
        texture_image = None
        if texture:
            normals = geometry.camera_normals[0].cpu().numpy()  # the shading's normals: computed once
            texture_image = self.unwrapper.unwrap(photo, projected, normals, colors,
                                                  camera_vertices=geometry.camera_vertices[0].cpu().numpy()).texture
        names = model.expression_names
        weights = coeffs.expression[0].cpu().numpy().tolist()
        return FaceReconstruction(
            index=index,
            method=method,
            box=np.asarray(detection.box, np.float64),
            detected_landmarks=np.asarray(detection.landmarks68, np.float64),
            fitted_landmarks=fitted,
            coefficients=coeffs.to("cpu"),
            vertices=geometry.vertices[0].cpu().numpy(),
            neutral_vertices=neutral[0].cpu().numpy(),
            projected=projected,
            vertex_colors=colors,
            faces=model.triangles.cpu().numpy(),
            uv=self.unwrapper.uv if texture_image is not None else None,
            face_uv_index=self.unwrapper.triangle_uv_index if texture_image is not None else None,
            texture=texture_image,
            blendshapes=dict(zip(names, weights)),
            pose=HeadPose.from_coefficients(coeffs.to("cpu")),
            alignment=aligned,
            detector=detection.detector,
            expression_basis=model.expression_basis.detach().cpu().numpy().reshape(model.n_expression, -1, 3),
            eyeball_vertices=self._eyeball_vertices(),
            face_triangles=self._face_triangles(),
        )

    def _face_triangles(self) -> np.ndarray:
        """(F,) bool: triangles whose vertices all lie in the model's narrow face region, and the eyeballs."""
        if not hasattr(self, "_narrow_face_triangles"):
            in_face = np.zeros(self.model.n_vertices, bool)
            in_face[self.model.narrow_face_vertices.cpu().numpy()] = True
            triangles = self.model.triangles.cpu().numpy()
            self._narrow_face_triangles = in_face[triangles].all(1) | ~self.model.skin_triangles.cpu().numpy()
        return self._narrow_face_triangles

    def repose(self, face: FaceReconstruction, expression: dict[str, float] | None = None,
               identity: dict[int, float] | None = None) -> np.ndarray:
        """Vertices (N, 3) of a reconstructed face with some expression weights / identity modes changed."""
        coeffs = face.coefficients.clone()
        for name, value in (expression or {}).items():
            coeffs.expression[0, self.model.expression_names.index(name)] = float(value)
        for mode, value in (identity or {}).items():
            coeffs.identity[0, int(mode)] = float(value)
        with torch.no_grad():
            verts = self.model(coeffs.identity.to(self.device), self.model.clamp_expression(coeffs.expression.to(
                self.device)))
        return verts[0].cpu().numpy()
