"""Out-of-model test faces: Surrey Face Model (SFM) shapes, textured from real photos, rendered as photos.

The SFM (``../shared/peers/eos-sfm``, eos's shape-only model, non-commercial licence, never shipped) was built from
other scans than ICT-FaceKit, so ICT cannot reproduce its faces exactly: a benchmark on them does not reward fitting
ICT to ICT. Build machines only (the folder is absent on a user's machine and in a fresh clone).

- `SurreyModel`: the 63-mode SFM shape model (mm, +y up, +z out of the face) with its iBUG-68 vertex map, plus a fixed
  two-times midpoint subdivision (13k vertices) so renders and ground-truth point sets are dense.
- `photo_texture`: per-vertex colours of the subdivided SFM mean topology taken from a real photo: eos fits the SFM to
  the photo's 68 landmarks, every front-facing vertex samples the photo, grazing ones fade to the median skin colour.
- `render_face`: one SFM shape with a texture at a given yaw / pitch, perspective camera, over a plain background.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

SFM_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers" / "eos-sfm"
NOSE_TIP_IBUG = 30  # 0-based iBUG index of the nose tip
INNER_IBUG = np.arange(17, 68)  # the 51 inner landmarks (brows, nose, eyes, mouth)


def sfm_available(folder: Path = SFM_DIR) -> bool:
    return (folder / "sfm_shape_3448.bin").is_file()


def _midpoint_subdivision(n_vertices: int, faces: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """One midpoint (1 -> 4) subdivision as a sparse (N', N) matrix and the new faces."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = n_vertices + inverse.reshape(3, -1).T  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = faces.T
    m01, m12, m20 = mid.T
    new_faces = np.concatenate([np.c_[a, m01, m20], np.c_[m01, b, m12], np.c_[m20, m12, c], np.c_[m01, m12, m20]])
    rows = np.concatenate([np.arange(n_vertices), np.repeat(n_vertices + np.arange(len(unique)), 2)])
    cols = np.concatenate([np.arange(n_vertices), unique.reshape(-1)])
    vals = np.concatenate([np.ones(n_vertices), np.full(2 * len(unique), 0.5)])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n_vertices + len(unique), n_vertices))
    return matrix, new_faces


def read_ibug_map(path: Path) -> dict[int, int]:
    """``ibug_to_sfm.txt`` -> {0-based iBUG index: SFM vertex}."""
    out = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(\d+)\s*=\s*(\d+)", line)
        if match:
            out[int(match.group(1)) - 1] = int(match.group(2))
    return out


class SurreyModel:
    def __init__(self, folder: Path = SFM_DIR, subdivisions: int = 2) -> None:
        import eos

        self.folder = folder
        shape_only = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin"))
        shape = shape_only.get_shape_model()
        blendshapes = eos.morphablemodel.load_blendshapes(str(folder / "expression_blendshapes_3448.bin"))
        # eos's fitter needs a model with expressions (its 6 blendshapes)
        self.eos_model = eos.morphablemodel.MorphableModel(
            shape, blendshapes, color_model=eos.morphablemodel.PcaModel(), vertex_definitions=None,
            texture_coordinates=shape_only.get_texture_coordinates())
        self.mean = np.asarray(shape.get_mean(), np.float64).reshape(-1, 3)
        self.basis = np.asarray(shape.get_rescaled_pca_basis(), np.float64)  # (3N, K): coefficients ~ N(0, 1)
        self.faces = np.asarray(shape.get_triangle_list(), np.int64)
        self.n_modes = self.basis.shape[1]
        ibug = read_ibug_map(folder / "ibug_to_sfm.txt")
        self.inner_ibug = np.array([k for k in INNER_IBUG if k in ibug])
        self.inner_vertices = np.array([ibug[k] for k in self.inner_ibug])
        self.nose_tip = ibug[NOSE_TIP_IBUG]
        matrix = sp.identity(len(self.mean), format="csr")
        faces = self.faces
        for _ in range(subdivisions):
            step, faces = _midpoint_subdivision(matrix.shape[0], faces)
            matrix = step @ matrix
        self.subdivide = matrix.tocsr()  # dense vertices = subdivide @ vertices
        self.dense_faces = faces

    def shape(self, coefficients: np.ndarray) -> np.ndarray:
        """(K,) coefficients (N(0, 1) units) -> (N, 3) vertices in mm."""
        c = np.zeros(self.n_modes)
        c[: len(coefficients)] = coefficients
        return self.mean + (self.basis @ c).reshape(-1, 3)

    def dense(self, vertices: np.ndarray) -> np.ndarray:
        return np.asarray(self.subdivide @ vertices)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    fn = np.cross(v1 - v0, v2 - v0)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, faces[:, i], fn)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample (H, W, 3) uint8 at continuous pixel coordinates (pixel centres at +0.5) -> (N, 3) float in [0, 1]."""
    import cv2

    from msma.pixels import to_pixel_index

    # cv2.remap wants maps shorter than 32767 per side: lay the N points out as rows of 256
    pad = (-len(xy)) % 256
    coords = to_pixel_index(np.concatenate([xy, np.zeros((pad, 2))])).astype(np.float32).reshape(-1, 256, 2)
    out = cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3)[: len(xy)].astype(np.float64) / 255.0


def photo_texture(sfm: SurreyModel, photo: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """Per-vertex colours (N_dense, 3) in [0, 1] of a real face on the subdivided SFM mean topology."""
    import eos

    landmarks = [eos.core.Landmark(str(i + 1), [float(x), float(y)]) for i, (x, y) in enumerate(landmarks68)]
    mapper = eos.core.LandmarkMapper(str(sfm.folder / "ibug_to_sfm.txt"))
    h, w = photo.shape[:2]
    mesh, pose, _, _ = eos.fitting.fit_shape_and_pose(
        sfm.eos_model, landmarks, mapper, w, h, eos.morphablemodel.load_edge_topology(
            str(sfm.folder / "sfm_3448_edge_topology.json")),
        eos.fitting.ContourLandmarks.load(str(sfm.folder / "ibug_to_sfm.txt")),
        eos.fitting.ModelContour.load(str(sfm.folder / "sfm_model_contours.json")),
    )
    verts = sfm.dense(np.asarray(mesh.vertices, np.float64))
    mv, proj = np.asarray(pose.get_modelview()), np.asarray(pose.get_projection())
    homo = np.c_[verts, np.ones(len(verts))] @ (proj @ mv).T
    # glm::project with viewport (0, h, w, -h): y flips; continuous pixel coordinates
    xy = np.c_[(homo[:, 0] + 1) * w / 2, (1 - homo[:, 1]) * h / 2]
    normals = _vertex_normals(verts, sfm.dense_faces) @ mv[:3, :3].T
    colours = _bilinear(photo, xy)
    facing = np.clip((normals[:, 2] - 0.25) / 0.35, 0, 1)[:, None]
    skin = np.median(colours[facing[:, 0] > 0.9], axis=0)
    return facing * colours + (1 - facing) * skin


@dataclass
class RenderedFace:
    image: np.ndarray  # (S, S, 3) uint8
    yaw: float  # degrees
    pitch: float
    screen: np.ndarray  # (N_dense, 2) pixel positions of the dense vertices (original vertices first)


def render_face(sfm: SurreyModel, vertices: np.ndarray, colours: np.ndarray, yaw: float, pitch: float,
                size: int = 512, distance_mm: float = 600.0, face_width_px: float = 230.0, seed: int = 0,
                ) -> RenderedFace:
    """Render SFM vertices (N, 3) mm with dense per-vertex colours at (yaw, pitch) degrees over a plain background."""
    from msma.face_model import euler_to_matrix
    from msma.render import Renderer

    dense = sfm.dense(vertices)
    # face centre on the optical axis, nose tip at z = 0 (the original vertices come first in the dense set)
    dense = dense - np.r_[dense[:, :2].mean(0), dense[sfm.nose_tip, 2]]
    rotation = euler_to_matrix(torch.tensor([[np.deg2rad(pitch), np.deg2rad(yaw), 0.0]], dtype=torch.float64))[0]
    cam = dense @ rotation.numpy().T
    focal = face_width_px * distance_mm / 160.0
    depth = distance_mm - cam[:, 2]
    screen = np.c_[size / 2 + focal * cam[:, 0] / depth, size / 2 - focal * cam[:, 1] / depth, depth]
    normals = _vertex_normals(cam, sfm.dense_faces)
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    shade = 0.75 + 0.25 * np.clip(normals @ light, 0, 1)
    rgb = np.clip(colours * shade[:, None], 0, 1)
    with torch.no_grad():
        out = Renderer((size, size)).render_colors(
            torch.as_tensor(screen, dtype=torch.float32)[None], torch.as_tensor(sfm.dense_faces),
            torch.as_tensor(rgb, dtype=torch.float32)[None])
    rng = np.random.default_rng(seed)
    top, bottom = rng.uniform(0.2, 0.8, 3), rng.uniform(0.1, 0.7, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    background = (1 - ramp) * top + ramp * bottom + rng.normal(0, 0.01, (size, size, 3))
    mask = out.mask[0].numpy()[..., None]
    image = np.where(mask, out.image[0].numpy(), background)
    return RenderedFace((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), yaw, pitch, screen[:, :2])
