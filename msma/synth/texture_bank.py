"""Texture bank: real skin albedos for the synthetic faces, unwrapped from photos by the fitter (landmarks +
photometric fit, then the photo divided by the fitted shading)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from msma.face_model import Coefficients, FaceModel, sh_irradiance


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
    normals = g.camera_normals[0]  # the normals the shading used
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
