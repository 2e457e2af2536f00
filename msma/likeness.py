"""How much a reconstruction looks like the person: dlib's face-recognition embedding of the photo against renders of
the reconstructed head turned to other views.

    scorer = LikenessScorer(reconstructor.model)
    scorer(face).mean_distance          # face: a `msma.api.FaceReconstruction` made with texture=True

The head is rendered with its texture unwrapped from the photo, so at the photo's own pose it reproduces the photo
whatever the shape; turned to another view, a wrong shape moves the photo's pixels to the wrong places. The photo's
aligned crop and each render go through the same framing (dlib's 5-point predictor and ``get_face_chip``, what the
descriptor was trained on) and the same torch port of dlib's ResNet (`msma.face_embedding`). Distances are dlib's
Euclidean distances: below `msma.face_embedding.SAME_PERSON_DISTANCE` (0.6) dlib calls two faces the same person.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from msma.face_embedding import DlibChipper, DlibFaceEmbedder, embedding_distance
from msma.face_model import FaceModel

DEFAULT_YAWS = (-30.0, 0.0, 30.0)  # degrees: the views the reconstruction is rendered at
RENDER_BACKGROUND = 0.5  # grey behind the rendered head


@dataclass
class Likeness:
    """dlib embedding distance between a photo and renders of its reconstruction, one per view (yaw degrees)."""

    distances: dict[float, float] = field(default_factory=dict)

    @property
    def mean_distance(self) -> float:
        return float(np.mean(list(self.distances.values())))


class LikenessScorer:
    """Scores `FaceReconstruction` results of one face model (``model``: the reconstructor's)."""

    def __init__(self, model: FaceModel, yaws: tuple[float, ...] = DEFAULT_YAWS,
                 embedder: DlibFaceEmbedder | None = None) -> None:
        from msma.render import Renderer

        self.model = model
        self.yaws = tuple(float(y) for y in yaws)
        self.size = int(model.camera.image_size)
        self.renderer = Renderer((self.size, self.size))
        self.embedder = embedder or DlibFaceEmbedder.from_package()
        self.chip = DlibChipper()

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.embedder.embed_uint8(np.stack([self.chip(c) for c in crops]))

    def render_view(self, face, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
        """(S, S, 3) uint8: the textured head of ``face`` (expression kept) in the aligned-crop camera, turned to
        (pitch, yaw) degrees with no roll, at the photo's fitted translation."""
        return self.render(face, torch.tensor([[np.deg2rad(pitch_deg), np.deg2rad(yaw_deg), 0.0]]))

    @torch.no_grad()
    def render(self, face, angles: torch.Tensor) -> np.ndarray:
        """(S, S, 3) uint8 render of ``face``'s textured head at (1, 3) Euler angles (radians, the model's
        convention) and its fitted translation; ``face.coefficients.angles`` gives back the aligned crop."""
        if face.texture is None or face.uv is None:
            raise ValueError("the reconstruction has no texture: reconstruct with texture=True")
        model = self.model
        vertices = torch.as_tensor(face.vertices, dtype=torch.float32)[None]
        translation = face.coefficients.translation.to(torch.float32)
        screen = model.camera.project(model.pose(vertices, angles.to(torch.float32), translation))
        texture = torch.as_tensor(face.texture, dtype=torch.float32) / 255.0
        out = self.renderer.render_texture(
            screen, torch.as_tensor(face.faces, dtype=torch.long), torch.as_tensor(face.uv, dtype=torch.float32),
            torch.as_tensor(face.face_uv_index, dtype=torch.long), texture, background=RENDER_BACKGROUND)
        return (out.image[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)

    def __call__(self, face) -> Likeness:
        renders = [self.render_view(face, yaw) for yaw in self.yaws]
        embeddings = self.embed([face.alignment.image, *renders])
        distances = embedding_distance(embeddings[0][None], embeddings[1:])
        return Likeness({yaw: float(d) for yaw, d in zip(self.yaws, distances)})
