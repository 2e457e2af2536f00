"""Synthetic video frames: an ICT face posed by given weights and angles, rendered like a camera frame.

Used by the tracker's landmark calibration (`msma.track_calibration`) and benchmark (`benchmarks/tracking.py`).
The camera looks down -z from z = ``model.camera.distance`` with ``focal`` pixels, the image centre on the axis;
the face's appearance (identity, albedo, iris and hair decoration, lighting) comes from a
`msma.synth.SyntheticFaceGenerator` sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from msma.face_model import FaceModel, sh_irradiance, vertex_normals

__all__ = ["FaceAppearance", "FrameRenderer"]


@dataclass
class FaceAppearance:
    identity: torch.Tensor  # (1, n_identity)
    albedo: torch.Tensor  # (1, N, 3) decorated per-vertex reflectance
    lighting: torch.Tensor  # (1, 27)

    @classmethod
    def from_generator(cls, generator, index: int) -> FaceAppearance:
        """Sample ``index`` of a `SyntheticFaceGenerator` (its texture bank albedo when it has one)."""
        model = generator.model
        p = generator.sample_parameters(index)
        with torch.no_grad():
            albedo = model.albedo(torch.as_tensor(p["texture"])[None])
            bank = generator.texture_bank
            if bank is not None and len(bank) and int(p["bank"]) >= 0:
                albedo[0] = generator._bank_albedo(int(p["bank"]), albedo[0])
            albedo = generator._decorate(albedo, [p])
        return cls(torch.as_tensor(p["identity"])[None], albedo, torch.as_tensor(p["lighting"])[None])


class FrameRenderer:
    """Render posed faces into (height, width) RGB frames, ``supersample`` x supersampled."""

    def __init__(self, model: FaceModel, size: tuple[int, int] = (640, 480), focal: float = 1100.0,
                 supersample: int = 2) -> None:
        from msma.render import Renderer

        self.model = model
        self.width, self.height = size
        self.focal = float(focal)
        self.ss = int(supersample)
        self.renderer = Renderer((self.height * self.ss, self.width * self.ss))

    def project(self, camera_vertices: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """(1, N, 3) camera-frame vertices -> (1, N, 3) [x, y, depth] pixels (pixel centres at integers)."""
        depth = self.model.camera.distance - camera_vertices[..., 2]
        x = (self.width / 2 + self.focal * camera_vertices[..., 0] / depth) * scale - 0.5
        y = (self.height / 2 - self.focal * camera_vertices[..., 1] / depth) * scale - 0.5
        return torch.stack([x, y, depth], -1)

    @torch.no_grad()
    def render(self, face: FaceAppearance, expression: np.ndarray, angles: np.ndarray, background: np.ndarray,
               translation: np.ndarray | None = None, noise: float = 2.0,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """-> (frame (H, W, 3) uint8, projected vertices (N, 2) frame pixels)."""
        import cv2

        m = self.model
        verts = m(face.identity, torch.as_tensor(expression, dtype=torch.float32)[None])
        t = torch.zeros(1, 3) if translation is None else torch.as_tensor(translation, dtype=torch.float32)[None]
        cam = m.pose(verts, torch.as_tensor(angles, dtype=torch.float32)[None], t)
        colors = (face.albedo * sh_irradiance(vertex_normals(cam, m.triangles), face.lighting)).clamp(0, 1)
        size = (self.width * self.ss, self.height * self.ss)
        bg = background if background.shape[:2] == size[::-1] else cv2.resize(background, size)
        bg = torch.as_tensor(np.ascontiguousarray(bg), dtype=torch.float32)[None] / 255.0
        # supersampled pixel centres: x_ss = (x + 0.5) * ss - 0.5
        screen = self.project(cam, self.ss)
        image = self.renderer.render_colors(screen, m.triangles, colors, background=bg).image
        image = F.avg_pool2d(image.permute(0, 3, 1, 2), self.ss)[0].permute(1, 2, 0).numpy()
        if noise > 0:
            rng = rng or np.random.default_rng(0)
            image = image + rng.normal(0, noise / 255.0, image.shape)
        frame = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        return frame, self.project(cam)[0, :, :2].numpy().astype(np.float64)
