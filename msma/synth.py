"""Synthetic training faces with exact ground truth (random ICT faces rendered like photos).

    from msma.face_model import FaceModel
    from msma.synth import SyntheticFaceGenerator
    gen = SyntheticFaceGenerator(FaceModel.ict(), seed=0, backgrounds="../shared/data/faces_in_the_wild")
    batch = gen.sample(8)   # SyntheticBatch: images (8,3,224,224), coefficients, vertices, landmarks2d, mask

Every sample is a pure function of ``(seed, index)`` (``numpy.random.default_rng([seed, index])``): the generator is
deterministic per seed, shards of a cache can be rendered in parallel, and held-out seeds (e.g. 1000 for the benchmark)
never overlap the training seeds.

What a sample contains (priors):
  identity   N(0, s^2), s ~ U(0.8, 1.0) per face
  expression sparse ARKit: 0-4 active blendshapes (jawOpen / mouthSmile / eyeBlink more frequent, _L/_R mostly
             together), weights U(0.15, 1); 25 % of faces neutral
  pose       yaw: half N(0, 20 deg), half U(-60, 60) deg; pitch U(-25, 25) deg; roll N(0, 8 deg) clipped to 20 deg
  translation: the face is first placed so that its five alignment points match ``model.five_point_template()``
             with a scale + shift (what `msma.align` does to a real photo), then jittered (+-3 % scale, +-3 px),
             so the crop distribution matches real aligned crops (roll stays, as the alignment does not de-rotate)
  lighting   ambient + a random directional 2nd-order SH light, mostly monochrome (colour tint <= 5 %)
  albedo     texture coefficients: Laplacian modes N(0, 1) + a global skin tone (first three coefficients) drawn
             between light and dark skin; optionally a per-vertex albedo from a texture bank (real skin unwrapped by
             the fitter, see `vertex_albedo_from_photo`), then the texture target is its least-squares projection
  appearance not in the model (so the network learns to ignore them): dark iris/pupil on the eyeballs, a hair cap
             with a random hairline and colour (25 % bald)
  background random crops of real photos (``backgrounds`` folder / list) or random gradients + noise
  camera     2x supersampled rendering (anti-aliasing), occluders (rectangles / ellipses, 30 %), Gaussian blur,
             sensor noise, JPEG re-compression, global exposure / contrast jitter

Pre-rendering: `prerender_cache` / ``python -m msma.synth --out DIR --n N`` writes npz shards (uint8 images, uint8
masks, float16 coefficients, float32 landmarks) so training does not pay rendering twice; `SyntheticCache` reads them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from msma.face_model import (
    Coefficients,
    FaceModel,
    sh_irradiance,
    vertex_normals,
)
from msma.image_io import PHOTO_EXTENSIONS
from msma.landmarks.base import five_points_from_68

# light .. dark skin reflectance (linear-ish RGB); a face draws a tone on this segment (plus a small hue jitter)
SKIN_LIGHT = np.array([0.86, 0.68, 0.58], np.float32)
SKIN_DARK = np.array([0.40, 0.26, 0.18], np.float32)
FREQUENT_EXPRESSIONS = {"jawOpen": 3.0, "mouthSmile": 3.0, "eyeBlink": 2.0, "browInnerUp": 1.5, "mouthFunnel": 1.0}
HAIR_COLOURS = np.array(
    [[0.05, 0.04, 0.035], [0.18, 0.11, 0.07], [0.35, 0.24, 0.14], [0.65, 0.52, 0.32], [0.55, 0.55, 0.55]], np.float32
)
HAIR_PROBS = np.array([0.35, 0.3, 0.15, 0.1, 0.1])


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


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS and p.is_file())


def _load_backgrounds(backgrounds, max_side: int = 512) -> list[np.ndarray]:
    """Folder / list of paths / list of uint8 arrays -> uint8 (H, W, 3) arrays (downscaled, unreadable skipped)."""
    if backgrounds is None:
        return []
    if isinstance(backgrounds, (str, os.PathLike)):
        items: Sequence = list_images(backgrounds)
    else:
        items = list(backgrounds)
    out = []
    for item in items:
        if isinstance(item, np.ndarray):
            img = item
        else:
            try:
                from PIL import Image

                with Image.open(item) as im:
                    img = np.asarray(im.convert("RGB"))
            except Exception:
                continue
        if img.ndim != 3 or min(img.shape[:2]) < 32:
            continue
        scale = max_side / max(img.shape[:2])
        if scale < 1:
            import cv2

            img = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out


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
    ) -> None:
        from msma.render import Renderer

        self.model = model
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        self.renderer = renderer or Renderer(self.image_size * self.supersample, backend="auto")
        self.render_size = int(self.renderer.image_size[0])
        self.augment = augment
        self.backgrounds = _load_backgrounds(backgrounds)
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
        weights = np.ones(len(names))
        for i, name in enumerate(names):
            for key, w in FREQUENT_EXPRESSIONS.items():
                if name.startswith(key):
                    weights[i] = w
        self.expr_probs = weights / weights.sum()
        self.expr_partner = {}
        for i, name in enumerate(names):
            for a, b in (("_L", "_R"), ("_R", "_L")):
                if name.endswith(a) and name[:-2] + b in names:
                    self.expr_partner[i] = names.index(name[:-2] + b)
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
        lm = mean[m.landmarks68.cpu().numpy()]
        self.eye_level = float(lm[36:48, 1].mean())
        self.brow_level = float(lm[17:27, 1].mean())
        self.mean_y = mean[:, 1]
        self.mean_z = mean[:, 2]
        tri = m.triangles.cpu().numpy()
        self.face_triangles = torch.as_tensor(face[tri].all(1) & m.skin_triangles.cpu().numpy() & ~eye[tri].any(1))
        self.template = m.five_point_template()
        self._basis_pinv = None

    # ------------------------------------------------------------------ priors
    def sample_parameters(self, index: int) -> dict[str, np.ndarray]:
        """All random choices of sample ``index`` (numpy, one face)."""
        rng = np.random.default_rng([self.seed, int(index)])
        m = self.model
        p: dict[str, np.ndarray] = {}
        p["identity"] = rng.normal(0, rng.uniform(0.8, 1.0), m.n_identity).astype(np.float32)
        expr = np.zeros(m.n_expression, np.float32)
        lo, hi = m.expression_range if m.expression_range is not None else (-1.0, 1.0)
        if rng.random() > 0.25:
            k = int(rng.integers(1, 5))
            for i in rng.choice(m.n_expression, size=k, replace=False, p=self.expr_probs):
                w = rng.uniform(0.15, 1.0) if lo >= 0 else rng.normal(0, 1.0)
                expr[i] = w
                if i in self.expr_partner and rng.random() < 0.75:
                    expr[self.expr_partner[i]] = np.clip(w + rng.normal(0, 0.1), lo, hi)
        p["expression"] = np.clip(expr, lo, hi).astype(np.float32)
        yaw = rng.normal(0, 20) if rng.random() < 0.5 else rng.uniform(-60, 60)
        pitch = rng.uniform(-25, 25)
        roll = np.clip(rng.normal(0, 8), -20, 20)
        p["angles"] = np.radians([pitch, np.clip(yaw, -60, 60), roll]).astype(np.float32)
        # albedo: Laplacian modes + global tone
        tex = np.zeros(m.n_texture, np.float32)
        if m.info.name == "ict" and m.n_texture > 3:
            tex[3:] = rng.normal(0, 1, m.n_texture - 3)
            tone = SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * rng.beta(1.1, 2.0)
            tone = tone * (1 + rng.normal(0, 0.04, 3))
            tex[:3] = (tone - m.albedo_mean[0].cpu().numpy()) / 0.1
        else:
            tex[:] = rng.normal(0, 1, m.n_texture)
        p["texture"] = tex
        light = np.zeros((3, 9), np.float32)
        mono = np.zeros(9, np.float32)
        mono[0] = rng.uniform(-0.1, 0.45)
        direction = rng.normal(0, 1, 3) * np.array([1.0, 0.7, 1.0])
        direction[2] = abs(direction[2]) * (1 if rng.random() < 0.9 else -0.3)  # light mostly from the front
        direction /= np.linalg.norm(direction) + 1e-9
        strength = rng.uniform(0.0, 0.35)
        mono[1:4] = strength * np.array([-direction[1], direction[2], -direction[0]])
        mono[4:9] = rng.normal(0, 0.04, 5)
        tint = 1 + rng.normal(0, 0.05, 3) * (rng.random() < 0.5)
        light[:] = mono[None] * tint[:, None]
        light[:, 0] = (mono[0] + 0.8) * tint - 0.8  # tint the total DC (ambient included)
        p["lighting"] = light.reshape(27)
        p["jitter"] = np.array([rng.normal(0, 0.03), rng.normal(0, 3), rng.normal(0, 3)], np.float32)
        p["bank"] = np.array(
            int(rng.integers(len(self.texture_bank)))
            if self.texture_bank is not None and rng.random() < self.bank_probability
            else -1
        )
        # appearance not in the model
        p["iris_colour"] = (
            np.array([0.25, 0.15, 0.08]) * rng.uniform(0.4, 1.2)
            if rng.random() < 0.8
            else np.array([0.25, 0.35, 0.45]) * rng.uniform(0.6, 1.2)
        ).astype(np.float32)
        p["hair"] = np.array(
            [rng.random() < 0.75, rng.choice(len(HAIR_COLOURS), p=HAIR_PROBS), rng.uniform(0.85, 1.35)], np.float32
        )
        p["effects_seed"] = np.array(rng.integers(2**31 - 1))
        return p

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
        backgrounds = torch.as_tensor(
            np.stack([self._background(p, self.render_size) for p in params]), dtype=torch.float32, device=dev
        )
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
        return out

    def _background(self, p: dict, size: int) -> np.ndarray:
        rng = np.random.default_rng(int(p["effects_seed"]) + 1)
        if self.backgrounds and rng.random() < 0.85:
            import cv2

            img = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
            h, w = img.shape[:2]
            side = int(rng.uniform(0.3, 1.0) * min(h, w))
            y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            return crop.astype(np.float32) / 255.0
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        t = (np.cos(angle) * xx + np.sin(angle) * yy - min(0, np.cos(angle)) - min(0, np.sin(angle))) / 1.5
        img = c0 + (c1 - c0) * t[..., None] + rng.normal(0, rng.uniform(0, 0.08), (size, size, 3))
        return img.clip(0, 1).astype(np.float32)


def camera_effects(image: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Occluders, exposure, blur, noise and JPEG on one uint8 (H, W, 3) image; mask loses occluded pixels."""
    import cv2

    rng = np.random.default_rng(seed)
    img = image.astype(np.float32) / 255.0
    h, w = img.shape[:2]
    mask = mask.copy()
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            occ = np.zeros((h, w), np.uint8)
            cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.3, 1.0) * h
            ax, ay = rng.uniform(0.08, 0.25) * w, rng.uniform(0.05, 0.2) * h
            if rng.random() < 0.5:
                cv2.ellipse(occ, (int(cx), int(cy)), (int(ax), int(ay)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            else:
                cv2.rectangle(occ, (int(cx - ax), int(cy - ay)), (int(cx + ax), int(cy + ay)), 1, -1)
            colour = rng.uniform(0, 1, 3) * rng.uniform(0.3, 1.0)
            texture = colour + rng.normal(0, 0.03, (h, w, 3))
            sel = occ.astype(bool)
            img[sel] = texture[sel]
            mask &= ~sel
    # exposure / contrast / gamma
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-0.05, 0.05)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.5) * w / 224
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < 0.7:
        img = img + rng.normal(0, rng.uniform(0.005, 0.04), img.shape)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out), mask


# ---------------------------------------------------------------------- texture bank
@torch.no_grad()
def vertex_albedo_from_photo(
    model: FaceModel, renderer, crop: np.ndarray, coeffs: Coefficients, min_normal_z: float = 0.3
) -> np.ndarray:
    """Unwrap a real face into per-vertex albedo (N, 3): sample the aligned crop at the projected vertices, divide by
    the fitted SH shading. Vertices that are hidden, grazing or outside the crop are 0 (the generator falls back to
    the model albedo there). ``crop``: uint8 (H, W, 3) aligned crop; ``coeffs``: a fit of it (batch 1)."""
    g = model.geometry(coeffs)
    size = crop.shape[0]
    s = size / model.camera.image_size
    screen = torch.cat([g.screen[..., :2] * s, g.screen[..., 2:]], -1)
    frags = renderer.rasterize(screen, model.triangles) if renderer.image_size[0] == size else None
    img = torch.as_tensor(crop, dtype=torch.float32) / 255.0
    xy = screen[0, :, :2]
    xi = xy[:, 0].floor().long().clamp(0, size - 1)
    yi = xy[:, 1].floor().long().clamp(0, size - 1)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size)
    normals = vertex_normals(g.camera_vertices, model.triangles)[0]
    visible = inside & (normals[:, 2] > min_normal_z)
    if frags is not None:  # depth test against the rasterised depth
        depth = frags.depth[0, yi, xi]
        visible &= (frags.mask[0, yi, xi]) & (screen[0, :, 2] <= depth + 0.05)
    shading = sh_irradiance(normals[None], coeffs.lighting)[0].clamp_min(0.2)
    albedo = (img[yi, xi] / shading).clamp(0, 1)
    albedo[~visible] = 0
    return albedo.cpu().numpy().astype(np.float32)


def tame_albedo(albedo: np.ndarray, skin: np.ndarray | None = None, max_chroma: float = 0.15,
                lum_range: tuple[float, float] = (0.25, 1.5)) -> np.ndarray:
    """Limit an unwrapped albedo (N, 3) to plausible skin around its median colour: luminance within ``lum_range``
    times the median, chromaticity within ``max_chroma`` of the median's (removes colour casts from mis-fitted light
    and background pixels at the silhouette, keeps brows, lips, beards)."""
    albedo = np.asarray(albedo, np.float32)
    skin = np.median(albedo, axis=0) if skin is None else np.asarray(skin, np.float32)
    lum = albedo.mean(-1, keepdims=True).clip(1e-4)
    skin_lum = float(skin.mean())
    chroma = albedo / lum
    skin_chroma = skin / max(skin_lum, 1e-4)
    chroma = skin_chroma + np.clip(chroma - skin_chroma, -max_chroma, max_chroma)
    lum = np.clip(lum, lum_range[0] * skin_lum, lum_range[1] * skin_lum)
    return np.clip(chroma * lum, 0, 1)


def build_texture_bank(
    model: FaceModel, crops: np.ndarray, landmarks: np.ndarray, progress: bool = True
) -> np.ndarray:
    """Per-vertex skin albedos (K, N, 3) unwrapped from real aligned crops (K, 224, 224, 3) uint8 with their 68
    landmarks: the analysis-by-synthesis fitter (`Reconstructor.estimate(method="fitting")`: landmarks + photometric)
    gives pose, shape and lighting; `vertex_albedo_from_photo` divides the photo by the fitted shading. Hidden
    vertices take their mirror twin's albedo, remaining holes and non-face vertices the mean visible skin colour."""
    from msma.api import Reconstructor
    from msma.render import Renderer

    rec = Reconstructor(method="fitting", face_model=model)
    renderer = Renderer(model.camera.image_size)
    mean = model.mean.detach().cpu().numpy()
    from scipy.spatial import cKDTree

    mirror = cKDTree(mean).query(mean * np.array([-1.0, 1.0, 1.0]))[1]
    face = np.zeros(len(mean), bool)
    face[model.face_vertices.cpu().numpy()] = True
    bank = []
    for i in range(len(crops)):
        try:
            coeffs = rec.estimate(crops[i : i + 1], landmarks[i : i + 1], method="fitting")
        except Exception as exc:  # a failed fit is skipped
            print(f"texture bank: face {i} skipped ({exc})")
            continue
        albedo = vertex_albedo_from_photo(model, renderer, crops[i], coeffs.to(model.device))
        visible = albedo.sum(-1) > 0
        fill = ~visible & visible[mirror]
        albedo[fill] = albedo[mirror[fill]]
        visible = albedo.sum(-1) > 0
        if (visible & face).sum() < 0.3 * face.sum():
            continue
        skin = np.median(albedo[visible & face], axis=0)
        albedo[~visible | ~face] = skin
        bank.append(tame_albedo(albedo, skin).astype(np.float16))
        if progress:
            print(f"texture bank: {len(bank)} albedos ({i + 1}/{len(crops)} faces)", flush=True)
    return np.stack(bank) if bank else np.zeros((0, len(mean), 3), np.float16)


def texture_bank_from_photos(model: FaceModel, photos: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
    """`build_texture_bank` on the largest detected face of each photo (uint8 RGB); photos without a face are
    skipped."""
    from msma.align import align_face, transform_points
    from msma.landmarks import detect_faces

    template = model.five_point_template()
    crops, landmarks = [], []
    for photo in photos:
        faces = detect_faces(photo)
        if not faces:
            continue
        aligned = align_face(photo, faces[0].five_points(), template=template)
        crops.append(aligned.image)
        landmarks.append(transform_points(faces[0].landmarks68, aligned.matrix))
    if not crops:
        return np.zeros((0, model.n_vertices, 3), np.float16)
    return build_texture_bank(model, np.stack(crops), np.stack(landmarks), progress=progress)


# ---------------------------------------------------------------------- cache
def prerender_cache(
    model: FaceModel,
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    image_size: int = 128,
    shard_size: int = 500,
    backgrounds=None,
    texture_bank=None,
    shards: Sequence[int] | None = None,
    batch: int = 8,
    progress: bool = True,
    bank_probability: float = 0.5,
) -> list[Path]:
    """Render samples ``0..n-1`` of ``seed`` to ``out_dir/shard_XXXXX.npz``; existing shards are kept (resumable).

    ``shards``: only these shard numbers (to split the work over processes).
    Shard arrays: images uint8 (n, S, S, 3), mask uint8 (n, S, S), landmarks float32 (n, 68, 2) image pixels,
    one float16 array per coefficient field, texture_valid bool, indices int64.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = SyntheticFaceGenerator(model, seed=seed, image_size=image_size, backgrounds=backgrounds,
                                 texture_bank=texture_bank, bank_probability=bank_probability)
    n_shards = math.ceil(n / shard_size)
    written = []
    todo = list(range(n_shards) if shards is None else shards)
    meta = {"seed": seed, "n": n, "image_size": image_size, "shard_size": shard_size, "model": model.info.name,
            "shards": todo, "backgrounds": str(backgrounds) if backgrounds is not None else None,
            "texture_bank": None if texture_bank is None else len(texture_bank), "bank_probability": bank_probability}
    (out / f"meta_{todo[0] if todo else 0:05d}.json").write_text(json.dumps(meta, indent=1))
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    for k in todo:
        path = out / f"shard_{k:05d}.npz"
        if path.exists():
            written.append(path)
            continue
        start, stop = k * shard_size, min(n, (k + 1) * shard_size)
        parts = []
        bar = tqdm(total=stop - start, desc=path.name, disable=not progress) if tqdm else None
        for i in range(start, stop, batch):
            parts.append(gen.render_indices(range(i, min(stop, i + batch))))
            if bar:
                bar.update(parts[-1].batch_size)
        if bar:
            bar.close()
        arrays = {
            "images": np.concatenate(
                [(p.images.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8) for p in parts]
            ),
            "mask": np.concatenate([p.mask.cpu().numpy().astype(np.uint8) for p in parts]),
            "landmarks": np.concatenate([p.landmarks2d.cpu().numpy().astype(np.float32) for p in parts]),
            "texture_valid": np.concatenate([p.texture_valid.cpu().numpy() for p in parts]),
            "indices": np.concatenate([p.indices.numpy() for p in parts]),
        }
        for f in fields(Coefficients):
            arrays[f.name] = np.concatenate([getattr(p.coefficients, f.name).cpu().numpy() for p in parts]).astype(
                np.float16
            )
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        written.append(path)
    return written


class SyntheticCache(torch.utils.data.Dataset):
    """All shards of a cache directory, held in memory (uint8). Items: dict of tensors (image float (3,S,S) ...)."""

    def __init__(self, folder: str | os.PathLike, max_items: int | None = None) -> None:
        paths = sorted(Path(folder).glob("shard_*.npz"))
        if not paths:
            raise FileNotFoundError(f"no shard_*.npz in {folder} (render one with `python -m msma.synth`)")
        data: dict[str, list] = {}
        for p in paths:
            with np.load(p) as z:
                for k in z.files:
                    data.setdefault(k, []).append(z[k])
        self.arrays = {k: np.concatenate(v) for k, v in data.items()}
        if max_items is not None:
            self.arrays = {k: v[:max_items] for k, v in self.arrays.items()}
        self.image_size = int(self.arrays["images"].shape[1])

    def __len__(self) -> int:
        return len(self.arrays["images"])

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """Items ``indices`` stacked, in one fancy-indexing call per array (what `__getitem__` gives, batched)."""
        a, idx = self.arrays, np.asarray(indices, dtype=np.int64)
        out = {
            "image": torch.from_numpy(a["images"][idx]).permute(0, 3, 1, 2).float() / 255.0,
            "mask": torch.from_numpy(a["mask"][idx].astype(bool)),
            "landmarks": torch.from_numpy(a["landmarks"][idx]),
            "texture_valid": torch.from_numpy(a["texture_valid"][idx].astype(bool)),
        }
        for f in fields(Coefficients):
            out[f.name] = torch.from_numpy(a[f.name][idx].astype(np.float32))
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = self.arrays
        item = {
            "image": torch.from_numpy(a["images"][i]).permute(2, 0, 1).float() / 255.0,
            "mask": torch.from_numpy(a["mask"][i].astype(bool)),
            "landmarks": torch.from_numpy(a["landmarks"][i]),
            "texture_valid": torch.tensor(bool(a["texture_valid"][i])),
        }
        for f in fields(Coefficients):
            item[f.name] = torch.from_numpy(a[f.name][i].astype(np.float32))
        return item


def save_preview(batch: SyntheticBatch, path: str | os.PathLike, columns: int = 8, landmarks: bool = True) -> None:
    """A contact sheet of a batch (with landmarks) as PNG, to eyeball realism."""
    import cv2

    imgs = (batch.images.permute(0, 2, 3, 1).cpu().numpy() * 255).astype(np.uint8)
    tiles = []
    for b, img in enumerate(imgs):
        img = np.ascontiguousarray(img)
        if landmarks:
            for x, y in batch.landmarks2d[b].cpu().numpy():
                cv2.circle(img, (int(x), int(y)), 1, (0, 255, 0), -1)
        tiles.append(img)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.concatenate(rows, 0)[..., ::-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pre-render synthetic training faces to npz shards.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--backgrounds", default=None, help="folder of photos used for background crops")
    parser.add_argument("--texture-bank", default=None, help="npz with 'albedo' (K, N, 3) per-vertex albedos")
    parser.add_argument("--bank-probability", type=float, default=0.5)
    parser.add_argument("--shards", default=None, help="e.g. 0-7 or 1,3,5 (split work over processes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preview", default=None, help="write a PNG contact sheet of 16 samples and exit")
    parser.add_argument("--build-bank", default=None, metavar="REAL_NPZ",
                        help="unwrap skin albedos from a real-photo cache (python -m msma.data) into --out (npz) "
                             "and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = FaceModel.ict()
    if args.build_bank:
        with np.load(args.build_bank) as z:
            albedo = build_texture_bank(model, z["images"], z["landmarks"])
        np.savez_compressed(args.out, albedo=albedo)
        print(f"{len(albedo)} albedos -> {args.out}")
        return
    bank = np.load(args.texture_bank)["albedo"].astype(np.float32) if args.texture_bank else None
    if args.preview:
        gen = SyntheticFaceGenerator(model, seed=args.seed, image_size=args.image_size, backgrounds=args.backgrounds,
                                     texture_bank=bank)
        save_preview(gen.sample(16), args.preview)
        return
    shards = None
    if args.shards:
        if "-" in args.shards:
            a, b = args.shards.split("-")
            shards = list(range(int(a), int(b) + 1))
        else:
            shards = [int(s) for s in args.shards.split(",")]
    t0 = time.time()
    paths = prerender_cache(model, args.out, args.n, args.seed, args.image_size, args.shard_size, args.backgrounds,
                            bank, shards, bank_probability=args.bank_probability)
    print(f"{len(paths)} shards in {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
