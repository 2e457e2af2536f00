"""The synthetic face generator: random morphable-model faces (``msma.synth.priors``) rendered like photos, with
exact ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from msma.face_model import MODEL_UNITS_TO_MM, Coefficients, FaceModel, sh_irradiance, vertex_normals
from msma.landmarks.base import five_points_from_68
from msma.synth.backgrounds import load_backgrounds, random_background
from msma.synth.camera import camera_effects
from msma.synth.priors import HAIR_COLOURS, draw_parameters, expression_tables


@dataclass
class SyntheticBatch:
    images: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    coefficients: Coefficients  # ground truth (FaceModel convention: lighting without the SH_AMBIENT offset)
    vertices: torch.Tensor  # (B, N, 3) model frame (identity + expression, no pose), model units
    landmarks2d: torch.Tensor  # (B, 68, 2) pixels of `images` (x right, y down)
    mask: torch.Tensor  # (B, H, W) bool: visible face skin (face region, no eyes / hair / occluders)
    texture_valid: torch.Tensor  # (B,) bool: texture target exact (False when a bank albedo was projected)
    indices: torch.Tensor  # (B,) sample index within the seed

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]


def _similarity_scale_shift(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares scale s and shift d with s * src + d ~= dst (no rotation). src/dst (K, 2)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    s = float((a * b).sum() / max((a * a).sum(), 1e-9))
    return s, md - s * ms


class SyntheticFaceGenerator:
    """Random morphable-model faces rendered like photos, with exact ground truth.

    Args:
        model: the `FaceModel` (ICT default).
        renderer: an `msma.render.Renderer` whose image size is the render resolution (``image_size * supersample``);
            built automatically when None.
        seed: sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``.
        image_size: output size (the aligned crop is 224; smaller sizes are the same crop downscaled).
        backgrounds: folder, list of paths, or list of uint8 images; random gradients / noise when None.
        texture_bank: optional (K, N, 3) float per-vertex albedos (e.g. `vertex_albedo_from_photo`), used with
            probability ``bank_probability``.
        augment: camera effects (blur, noise, JPEG, occluders, exposure); off gives clean renders.
    """

    def __init__(
        self,
        model: FaceModel,
        renderer=None,
        seed: int = 0,
        image_size: int = 224,
        backgrounds=None,
        texture_bank: np.ndarray | None = None,
        bank_probability: float = 0.5,
        supersample: int = 2,
        augment: bool = True,
        facial_features: bool = False,
        shape_noise_mm: float = 0.0,
    ) -> None:
        from msma.render import Renderer

        self.model = model
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        self.renderer = renderer or Renderer(self.image_size * self.supersample, backend="auto")
        self.render_size = int(self.renderer.image_size[0])
        self.augment = augment
        # eyebrows and lip colour on the procedural skin (the model's albedo has neither, so brow and lip motion would
        # show only in the shading); off by default so that the benchmarks' seeded faces stay as they were
        self.facial_features = facial_features
        # smooth random bumps added to each face's neutral shape (amplitude in mm): faces outside the model's identity
        # span, whose coefficients then describe the shape only approximately; 0: the model's faces
        self.shape_noise_mm = float(shape_noise_mm)
        self.backgrounds = load_backgrounds(backgrounds)
        self.texture_bank = None if texture_bank is None else np.asarray(texture_bank, np.float32)
        self.bank_probability = bank_probability
        self._counter = 0
        self._prepare_model_tables()

    # ------------------------------------------------------------------ static tables
    def _prepare_model_tables(self) -> None:
        m = self.model
        mean = m.mean.detach().cpu().numpy()
        names = m.expression_names
        self.expr_names = names
        self.expr_probs, self.expr_partner = expression_tables(names)
        # eyes: vertices whose mean albedo is the model's eye colour and whose albedo basis is zero
        albedo_mean = m.albedo_mean.detach().cpu().numpy()
        basis = m.albedo_basis.detach().cpu().numpy().reshape(m.n_texture, -1, 3)
        eye = np.all(np.abs(albedo_mean - np.array([0.85, 0.82, 0.80])) < 1e-3, axis=1)
        eye &= np.abs(basis[min(3, m.n_texture - 1) :]).sum(axis=(0, 2)) == 0 if m.n_texture > 3 else eye
        self.iris = np.zeros(len(mean), np.float32)  # 0 sclera, 1 iris, 2 pupil
        for side in (-1, 1):
            idx = np.flatnonzero(eye & (np.sign(mean[:, 0]) == side))
            if len(idx) < 10:
                continue
            centre = mean[idx].mean(0)
            off = mean[idx] - centre
            cosz = off[:, 2] / np.linalg.norm(off, axis=1).clip(1e-9)
            self.iris[idx[cosz > 0.90]] = 1
            self.iris[idx[cosz > 0.975]] = 2
        self.eye = eye
        face = np.zeros(len(mean), bool)
        face[m.face_vertices.cpu().numpy()] = True
        self.face_vertex_mask = face
        self.mean_vertices = mean  # (N, 3) model units: where the shape-noise bumps are placed
        lm = mean[m.landmarks68.cpu().numpy()]
        self.eye_level = float(lm[36:48, 1].mean())
        self.brow_level = float(lm[17:27, 1].mean())
        self.mean_y = mean[:, 1]
        self.mean_z = mean[:, 2]
        tri = m.triangles.cpu().numpy()
        self.face_triangles = torch.as_tensor(face[tri].all(1) & m.skin_triangles.cpu().numpy() & ~eye[tri].any(1))
        self.template = m.five_point_template()
        self._basis_pinv = None
        self.brow_weight, self.lip_weight = self._feature_weights(mean, lm, face)

    @staticmethod
    def _feature_weights(mean: np.ndarray, lm: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-vertex (N,) paint weights in [0, 1] on the mean face (frontal x, y; model units): eyebrows within
        ~6 mm of the brow landmarks' polylines (thinner towards the temples), lips inside the outer lip contour."""
        from matplotlib.path import Path as PolygonPath

        front = face & (mean[:, 2] > lm[:, 2].min() - 0.15)
        xy = mean[:, :2]
        brow = np.zeros(len(mean))
        for side in (range(17, 22), range(22, 27)):
            pts = lm[list(side), :2]
            pts = pts + np.array([0.0, 0.02])  # dlib's brow points sit on the brow's lower edge
            for k in range(len(pts) - 1):
                a, b = pts[k], pts[k + 1]
                t = np.clip(((xy - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-12), 0, 1)
                dist = np.linalg.norm(xy - (a + t[:, None] * (b - a)), axis=1)
                outer = side.start == 17 and k == 0 or side.start == 22 and k == len(pts) - 2
                half = 0.04 if outer else 0.06  # model units: 4 / 6 mm
                brow = np.maximum(brow, np.clip(1.5 - dist / half, 0, 1))
        brow *= front & (mean[:, 1] > lm[36:48, 1].max())
        lip = PolygonPath(lm[48:60, :2]).contains_points(xy).astype(np.float64)
        lip *= front & (mean[:, 2] > lm[48:60, 2].min() - 0.1)
        return brow.astype(np.float32), lip.astype(np.float32)

    # ------------------------------------------------------------------ priors
    def sample_parameters(self, index: int) -> dict[str, np.ndarray]:
        """All random choices of sample ``index`` (numpy, one face): :func:`msma.synth.priors.draw_parameters`."""
        params = draw_parameters(np.random.default_rng([self.seed, int(index)]), self.model, self.expr_probs,
                                 self.expr_partner, None if self.texture_bank is None else len(self.texture_bank),
                                 self.bank_probability)
        params["index"] = np.array(int(index))
        return params

    # ------------------------------------------------------------------ sampling
    def sample(self, batch: int) -> SyntheticBatch:
        """The next ``batch`` samples of this generator's sequence."""
        indices = list(range(self._counter, self._counter + batch))
        self._counter += batch
        return self.render_indices(indices)

    @torch.no_grad()
    def render_indices(self, indices: Sequence[int]) -> SyntheticBatch:
        m = self.model
        dev = m.device
        params = [self.sample_parameters(i) for i in indices]

        def stack(key):
            return torch.as_tensor(np.stack([p[key] for p in params]), dtype=torch.float32, device=dev)

        coeffs = Coefficients(
            identity=stack("identity"),
            expression=stack("expression"),
            texture=stack("texture"),
            angles=stack("angles"),
            translation=torch.zeros(len(indices), 3, device=dev),
            lighting=stack("lighting"),
        )
        coeffs.translation = self._aligned_translation(coeffs, stack("jitter"))
        vertices = m(coeffs.identity, coeffs.expression)
        if self.shape_noise_mm > 0:
            vertices = vertices + torch.stack([self._shape_noise(p) for p in params]).to(vertices)
        cam = m.pose(vertices, coeffs.angles, coeffs.translation)
        screen = m.camera.project(cam)
        albedo = m.albedo(coeffs.texture)
        texture_valid = torch.ones(len(indices), dtype=torch.bool)
        for b, p in enumerate(params):
            if int(p["bank"]) >= 0:
                albedo[b] = self._bank_albedo(int(p["bank"]), albedo[b])
                coeffs.texture[b] = self._project_albedo(albedo[b])
                texture_valid[b] = False
        albedo = self._decorate(albedo, params)
        normals = vertex_normals(cam, m.triangles)
        colors = (albedo * sh_irradiance(normals, coeffs.lighting)).clamp(0, 1)

        s = self.render_size / m.camera.image_size
        screen_r = torch.cat([screen[..., :2] * s, screen[..., 2:]], -1)
        backgrounds = np.stack([random_background(self.backgrounds, int(p["effects_seed"]) + 1, self.render_size)
                                for p in params])
        backgrounds = torch.as_tensor(backgrounds, dtype=torch.float32, device=dev)
        out = self.renderer.render_colors(screen_r, m.triangles, colors, background=backgrounds)
        face_mask = (out.fragments.face_index >= 0) & self.face_triangles.to(dev)[out.fragments.face_index.clamp_min(0)]
        image = out.image.permute(0, 3, 1, 2)
        k = self.render_size // self.image_size
        if k > 1:
            image = F.avg_pool2d(image, k)
            face_mask = F.avg_pool2d(face_mask[:, None].float(), k)[:, 0] > 0.5
        elif self.render_size != self.image_size:
            image = F.interpolate(image, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
            face_mask = F.interpolate(face_mask[:, None].float(), size=self.image_size)[:, 0] > 0.5
        images_np = (image.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        mask_np = face_mask.cpu().numpy()
        if self.augment:
            for b, p in enumerate(params):
                images_np[b], mask_np[b] = camera_effects(images_np[b], mask_np[b], int(p["effects_seed"]))
        landmarks = screen[:, m.landmarks68, :2] * (self.image_size / m.camera.image_size)
        return SyntheticBatch(
            images=torch.as_tensor(images_np, device=dev).permute(0, 3, 1, 2).float() / 255.0,
            coefficients=coeffs,
            vertices=vertices,
            landmarks2d=landmarks,
            mask=torch.as_tensor(mask_np, device=dev),
            texture_valid=texture_valid.to(dev),
            indices=torch.as_tensor(list(indices)),
        )

    # ------------------------------------------------------------------ helpers
    def _aligned_translation(self, coeffs: Coefficients, jitter: torch.Tensor) -> torch.Tensor:
        """Translation that puts the five alignment points on the template (scale + shift), then jitter
        (relative scale, x pixels, y pixels)."""
        m = self.model
        f, c, dist = m.camera.focal, m.camera.center, m.camera.distance
        t = np.zeros((coeffs.batch_size, 3))
        for _ in range(4):
            coeffs.translation = torch.as_tensor(t, dtype=torch.float32, device=m.device)
            lm = m.project_landmarks(coeffs).cpu().numpy()
            for b in range(len(lm)):
                five = five_points_from_68(lm[b])
                s, d = _similarity_scale_shift(five, self.template)
                centre = five.mean(0)
                target = s * centre + d
                depth = dist - t[b, 2]
                new_depth = depth / s
                x_body = (centre - c) * depth / f * np.array([1.0, -1.0]) - t[b, :2]
                t[b, :2] = (target - c) * new_depth / f * np.array([1.0, -1.0]) - x_body
                t[b, 2] = dist - new_depth
        j = jitter.cpu().numpy().astype(np.float64)
        depth = dist - t[:, 2]
        new_depth = depth / (1 + j[:, 0])
        t[:, 0] = t[:, 0] * new_depth / depth + j[:, 1] * new_depth / f
        t[:, 1] = t[:, 1] * new_depth / depth - j[:, 2] * new_depth / f
        t[:, 2] = dist - new_depth
        return torch.as_tensor(t, dtype=torch.float32, device=m.device)

    def _bank_albedo(self, k: int, albedo: torch.Tensor) -> torch.Tensor:
        bank = torch.as_tensor(self.texture_bank[k], device=albedo.device)
        valid = bank.sum(-1, keepdim=True) > 0
        return torch.where(valid, bank, albedo)

    def _project_albedo(self, albedo: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self._basis_pinv is None:
            self._basis_pinv = torch.linalg.pinv(m.albedo_basis.T)  # (n_tex, N*3)
        return self._basis_pinv @ (albedo - m.albedo_mean).reshape(-1)

    def _decorate(self, albedo: torch.Tensor, params: list[dict]) -> torch.Tensor:
        """Iris / pupil and hair: appearance the model does not explain."""
        iris = torch.as_tensor(self.iris, device=albedo.device)
        y = torch.as_tensor(self.mean_y, device=albedo.device)
        z = torch.as_tensor(self.mean_z, device=albedo.device)
        face = torch.as_tensor(self.face_vertex_mask, device=albedo.device)
        eye = torch.as_tensor(self.eye, device=albedo.device)
        out = albedo.clone()
        for b, p in enumerate(params):
            out[b, iris == 1] = torch.as_tensor(p["iris_colour"], device=albedo.device)
            out[b, iris == 2] = 0.03
            has_hair, colour, hairline = p["hair"]
            if has_hair:
                hair = (~eye) & (((~face) & ((y > self.eye_level + 0.1) | (z < -0.6))) | (face & (y > hairline)))
                out[b, hair] = torch.as_tensor(HAIR_COLOURS[int(colour)], device=albedo.device)
            if self.facial_features and int(p["bank"]) < 0:  # a bank skin has the person's own brows and lips
                out[b] = self._paint_features(out[b], p)
        return out

    def _shape_noise(self, p: dict, bumps: int = 8) -> torch.Tensor:
        """(N, 3) model-unit displacement of one face: ``bumps`` Gaussian bumps (radius 15-40 mm) centred on random
        face vertices, each along a random direction with a normal amplitude of ``shape_noise_mm``; own random
        stream."""
        rng = np.random.default_rng([self.seed, int(p["index"]), 23])
        mean = self.mean_vertices
        face = np.flatnonzero(self.face_vertex_mask)
        out = np.zeros_like(mean)
        for _ in range(bumps):
            centre = mean[rng.choice(face)]
            radius = rng.uniform(0.15, 0.40)
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            amplitude = rng.normal(0, self.shape_noise_mm) / MODEL_UNITS_TO_MM
            falloff = np.exp(-((mean - centre) ** 2).sum(1) / (2 * radius ** 2))
            out += falloff[:, None] * direction * amplitude
        return torch.as_tensor(out, dtype=torch.float32)

    def _paint_features(self, albedo: torch.Tensor, p: dict) -> torch.Tensor:
        """Eyebrows (the hair colour, darkened, at a random density) and lips (a red tint of the skin), with their
        own random stream so the other choices of a seeded face do not change."""
        rng = np.random.default_rng([self.seed, int(p["index"]), 17])
        has_hair, colour, _ = p["hair"]
        brow_colour = HAIR_COLOURS[int(colour) if has_hair else int(rng.integers(3))] * rng.uniform(0.5, 1.0)
        density = rng.uniform(0.5, 0.95)
        lip_tint = np.array([0.92, 0.62, 0.64]) ** rng.uniform(0.5, 1.5)
        brow = torch.as_tensor(self.brow_weight * density, device=albedo.device)[:, None]
        lip = torch.as_tensor(self.lip_weight, device=albedo.device)[:, None]
        out = albedo * (1 - brow) + brow * torch.as_tensor(brow_colour, device=albedo.device, dtype=albedo.dtype)
        return out * (1 - lip + lip * torch.as_tensor(lip_tint, device=albedo.device, dtype=albedo.dtype))
