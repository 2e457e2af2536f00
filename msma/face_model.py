"""The morphable face model: coefficients in, vertices out (in the manner of smplx).

Default model: ICT-FaceKit (MIT) — 100 identity modes, 53 ARKit-named expression blendshapes with weights in
[0, 1]. Optional: BFM09 in Deep3DFaceRecon's ``BFM_model_front.mat`` layout (80 identity, 64 expression, 80 texture).

Units: decimetres (1 unit = 100 mm), centred, +y up, +z towards the camera. Camera and lighting follow
Deep3DFaceRecon: focal 1015 px, principal point 112 in a 224 crop, camera at z = 10 (12 for ICT), 2nd-order SH lighting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msma.assets import N_LAPLACIAN_MODES, resolve_face_model_path
from msma.landmarks.base import five_points_from_68

CM_TO_MODEL_UNITS = 0.1
MODEL_UNITS_TO_MM = 100.0
# Mean skin reflectance (linear-ish RGB in [0, 1]); the albedo basis varies around it.
MEAN_SKIN_ALBEDO = (0.71, 0.52, 0.44)
ALBEDO_MODE_SCALE = 0.04  # reflectance change per unit coefficient of a Laplacian mode
# Deep3DFaceRecon adds this to the DC band of every colour channel so zero lighting coefficients mean "lit".
SH_AMBIENT = 0.8
# Which ICT vertex carries each iBUG-68 point as 68-point detectors (and their human-labelled training data)
# place it; derived on synthetic renders by scripts/derive_ibug_ict.py.
IBUG_TABLE_PATH = Path(__file__).resolve().parent / "data" / "ibug68_to_ict.npz"


@dataclass
class Camera:
    focal: float = 1015.0
    center: float = 112.0
    distance: float = 10.0
    image_size: int = 224

    def project(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) camera-frame vertices -> (B, N, 3) [x_pix, y_pix, depth]."""
        depth = self.distance - vertices[..., 2]
        x = self.center + self.focal * vertices[..., 0] / depth
        y = self.center - self.focal * vertices[..., 1] / depth
        return torch.stack([x, y, depth], dim=-1)


@dataclass
class Coefficients:
    """All per-face parameters; every field is a (B, n) tensor."""

    identity: torch.Tensor
    expression: torch.Tensor
    texture: torch.Tensor
    angles: torch.Tensor  # (B, 3) pitch, yaw, roll in radians
    translation: torch.Tensor  # (B, 3)
    lighting: torch.Tensor  # (B, 27) = 3 colour channels x 9 SH bands

    @classmethod
    def zeros(cls, model: FaceModel, batch: int = 1, device: torch.device | str | None = None) -> Coefficients:
        device = device or model.device
        return cls(
            identity=torch.zeros(batch, model.n_identity, device=device),
            expression=torch.zeros(batch, model.n_expression, device=device),
            texture=torch.zeros(batch, model.n_texture, device=device),
            angles=torch.zeros(batch, 3, device=device),
            translation=torch.zeros(batch, 3, device=device),
            lighting=torch.zeros(batch, 27, device=device),
        )

    @classmethod
    def from_dict(cls, values: dict[str, torch.Tensor]) -> Coefficients:
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def detach(self) -> Coefficients:
        return Coefficients(**{k: v.detach() for k, v in self.as_dict().items()})

    def clone(self) -> Coefficients:
        return Coefficients(**{k: v.detach().clone() for k, v in self.as_dict().items()})

    def to(self, device: torch.device | str) -> Coefficients:
        return Coefficients(**{k: v.to(device) for k, v in self.as_dict().items()})

    def __getitem__(self, index) -> Coefficients:
        return Coefficients(**{k: v[index] for k, v in self.as_dict().items()})

    @property
    def batch_size(self) -> int:
        return self.identity.shape[0]


def detector_landmarks68(markup: np.ndarray, n_vertices: int, table: Path = IBUG_TABLE_PATH) -> np.ndarray:
    """The detector-convention 68 landmark vertices of the ICT mesh, or its ``markup`` when there is no table
    (or the table belongs to another mesh)."""
    if not table.is_file():
        return np.asarray(markup, np.int64)
    vertices = np.load(table)["vertices"].astype(np.int64)
    if vertices.shape != (68,) or int(vertices.max()) >= n_vertices:
        return np.asarray(markup, np.int64)
    return vertices


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) pitch, yaw, roll -> (B, 3, 3), R = Rz(roll) Ry(yaw) Rx(pitch)."""
    pitch, yaw, roll = angles.unbind(-1)
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)
    cx, sx, cy, sy, cz, sz = pitch.cos(), pitch.sin(), yaw.cos(), yaw.sin(), roll.cos(), roll.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """Inverse of `euler_to_matrix` for one (3, 3) matrix -> (pitch, yaw, roll) radians."""
    yaw = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rotation[2, 1], rotation[2, 2])
    roll = np.arctan2(rotation[1, 0], rotation[0, 0])
    return np.array([pitch, yaw, roll])


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(B, N, 3), (F, 3) -> unit area-weighted vertex normals (B, N, 3)."""
    v0, v1, v2 = (vertices[:, triangles[:, i]] for i in range(3))
    face_normals = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3), length = 2 * area
    normals = torch.zeros_like(vertices)
    for i in range(3):
        normals.index_add_(1, triangles[:, i], face_normals)
    return nn.functional.normalize(normals, dim=-1, eps=1e-8)


_SH_CONSTANTS = (
    np.pi,
    2 * np.pi / np.sqrt(3.0),
    2 * np.pi / np.sqrt(8.0),
    1 / np.sqrt(4 * np.pi),
    np.sqrt(3.0) / np.sqrt(4 * np.pi),
    3 * np.sqrt(5.0) / np.sqrt(12 * np.pi),
)


def sh_irradiance(normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon's 9-band SH irradiance. normals (B, N, 3), lighting (B, 27) -> (B, N, 3)."""
    a0, a1, a2, c0, c1, c2 = _SH_CONSTANTS
    gamma = lighting.view(-1, 3, 9).clone()
    gamma[:, :, 0] = gamma[:, :, 0] + SH_AMBIENT
    nx, ny, nz = normals.unbind(-1)
    basis = torch.stack(
        [
            torch.full_like(nx, a0 * c0),
            -a1 * c1 * ny,
            a1 * c1 * nz,
            -a1 * c1 * nx,
            a2 * c2 * nx * ny,
            -a2 * c2 * ny * nz,
            0.5 * a2 * c2 / np.sqrt(3.0) * (3 * nz**2 - 1),
            -a2 * c2 * nx * nz,
            0.5 * a2 * c2 * (nx**2 - ny**2),
        ],
        dim=-1,
    )  # (B, N, 9)
    return torch.einsum("bnk,bck->bnc", basis, gamma)


@dataclass
class FaceGeometry:
    """Everything the renderer and losses need for a batch of posed faces."""

    vertices: torch.Tensor  # (B, N, 3) model frame (shape + expression, no pose)
    camera_vertices: torch.Tensor  # (B, N, 3) after rotation + translation
    screen: torch.Tensor  # (B, N, 3) x_pix, y_pix, depth in the aligned crop
    albedo: torch.Tensor  # (B, N, 3)
    colors: torch.Tensor  # (B, N, 3) albedo * SH irradiance
    landmarks2d: torch.Tensor  # (B, 68, 2) crop pixels
    camera_normals: torch.Tensor | None = None  # (B, N, 3) unit normals after rotation (None without colour)


@dataclass
class FaceModelInfo:
    name: str
    source: str
    licence: str
    extra: dict = field(default_factory=dict)


class FaceModel(nn.Module):
    """A linear morphable model: ``vertices = mean + identity_basis @ id + expression_basis @ exp``.

    Bases are stored flat: (n_modes, N*3). Build with `FaceModel.ict()` or `FaceModel.bfm(path)`.
    """

    def __init__(
        self,
        mean: np.ndarray,
        identity_basis: np.ndarray,
        expression_basis: np.ndarray,
        albedo_mean: np.ndarray,
        albedo_basis: np.ndarray,
        triangles: np.ndarray,
        landmarks68: np.ndarray,
        expression_names: list[str],
        info: FaceModelInfo,
        expression_range: tuple[float, float] | None,
        uv: np.ndarray | None = None,
        triangle_uv_index: np.ndarray | None = None,
        skin_triangles: np.ndarray | None = None,
        face_vertices: np.ndarray | None = None,
        rigid_vertices: np.ndarray | None = None,
        camera: Camera | None = None,
        narrow_face_vertices: np.ndarray | None = None,
        markup_landmarks68: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        n = mean.shape[0]
        self.info = info
        self.camera = camera or Camera()
        self.expression_names = list(expression_names)
        self.expression_range = expression_range
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))  # (N, 3)
        self.register_buffer("identity_basis", torch.as_tensor(identity_basis, dtype=torch.float32).reshape(-1, n * 3))
        self.register_buffer(
            "expression_basis", torch.as_tensor(expression_basis, dtype=torch.float32).reshape(-1, n * 3)
        )
        self.register_buffer("albedo_mean", torch.as_tensor(albedo_mean, dtype=torch.float32))  # (N, 3)
        self.register_buffer("albedo_basis", torch.as_tensor(albedo_basis, dtype=torch.float32).reshape(-1, n * 3))
        self.register_buffer("triangles", torch.as_tensor(triangles, dtype=torch.long))
        # landmarks68: the vertex that carries each iBUG point as 68-point detectors place it (what fitting, the
        # reprojected landmarks and their NME use); markup_landmarks68: the model's own markup, which fixes the
        # alignment template (the network was trained on crops aligned to it)
        self.register_buffer("landmarks68", torch.as_tensor(landmarks68, dtype=torch.long))
        markup = landmarks68 if markup_landmarks68 is None else markup_landmarks68
        self.register_buffer("markup_landmarks68", torch.as_tensor(markup, dtype=torch.long))
        all_triangles = np.ones(len(triangles), bool) if skin_triangles is None else skin_triangles
        self.register_buffer("skin_triangles", torch.as_tensor(all_triangles, dtype=torch.bool))
        face = np.arange(n) if face_vertices is None else face_vertices
        self.register_buffer("face_vertices", torch.as_tensor(face, dtype=torch.long))
        narrow = face if narrow_face_vertices is None else narrow_face_vertices
        # the front of the face without forehead-to-scalp, ears and neck (ICT's "narrow_face")
        self.register_buffer("narrow_face_vertices", torch.as_tensor(narrow, dtype=torch.long))
        rigid = face if rigid_vertices is None else rigid_vertices
        self.register_buffer("rigid_vertices", torch.as_tensor(rigid, dtype=torch.long))
        self.uv = None if uv is None else np.asarray(uv, np.float32)
        self.triangle_uv_index = None if triangle_uv_index is None else np.asarray(triangle_uv_index, np.int64)

    # sizes -----------------------------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def n_identity(self) -> int:
        return self.identity_basis.shape[0]

    @property
    def n_expression(self) -> int:
        return self.expression_basis.shape[0]

    @property
    def n_texture(self) -> int:
        return self.albedo_basis.shape[0]

    @property
    def device(self) -> torch.device:
        return self.mean.device

    # model -----------------------------------------------------------------------------------------------
    def forward(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(B, n_id), (B, n_exp) -> vertices (B, N, 3) in the model frame."""
        offsets = identity @ self.identity_basis + expression @ self.expression_basis  # (B, N*3)
        return self.mean + offsets.view(-1, self.n_vertices, 3)

    def vertices_subset(self, identity: torch.Tensor, expression: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Vertices for the given indices only (cheap: used by landmark fitting). -> (B, K, 3)."""
        flat = (index[:, None] * 3 + torch.arange(3, device=index.device)).reshape(-1)
        offsets = identity @ self.identity_basis[:, flat] + expression @ self.expression_basis[:, flat]
        return self.mean[index] + offsets.view(-1, len(index), 3)

    def albedo(self, texture: torch.Tensor) -> torch.Tensor:
        """(B, n_tex) -> per-vertex reflectance (B, N, 3), clamped to [0, 1]."""
        return (self.albedo_mean + (texture @ self.albedo_basis).view(-1, self.n_vertices, 3)).clamp(0.0, 1.0)

    def pose(self, vertices: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        """Rigid transform into the camera frame: (B, N, 3) -> (B, N, 3)."""
        return vertices @ euler_to_matrix(angles).transpose(1, 2) + translation[:, None, :]

    def clamp_expression(self, expression: torch.Tensor) -> torch.Tensor:
        if self.expression_range is None:
            return expression
        return expression.clamp(*self.expression_range)

    def geometry(self, coeffs: Coefficients, with_color: bool = True) -> FaceGeometry:
        vertices = self(coeffs.identity, coeffs.expression)
        camera_vertices = self.pose(vertices, coeffs.angles, coeffs.translation)
        screen = self.camera.project(camera_vertices)
        if with_color:
            albedo = self.albedo(coeffs.texture)
            rotated_normals = vertex_normals(camera_vertices, self.triangles)
            colors = albedo * sh_irradiance(rotated_normals, coeffs.lighting)
        else:
            albedo = colors = torch.zeros_like(vertices)
            rotated_normals = None
        return FaceGeometry(vertices, camera_vertices, screen, albedo, colors, screen[:, self.landmarks68, :2],
                            rotated_normals)

    def five_point_template(self) -> np.ndarray:
        """(5, 2) crop pixels of the mean face's eye centres, nose tip and mouth corners at zero pose.

        This is the alignment template: a photo aligned to it matches the network's zero-initialised pose.
        """
        zero = Coefficients.zeros(self, 1)
        with torch.no_grad():
            verts = self.vertices_subset(zero.identity, zero.expression, self.markup_landmarks68)
            lm = self.camera.project(self.pose(verts, zero.angles, zero.translation))[0, :, :2].cpu().numpy()
        return five_points_from_68(lm)

    def project_landmarks(self, coeffs: Coefficients) -> torch.Tensor:
        """(B, 68, 2) crop pixels of the landmark vertices (no full-mesh evaluation)."""
        verts = self.vertices_subset(coeffs.identity, coeffs.expression, self.landmarks68)
        return self.camera.project(self.pose(verts, coeffs.angles, coeffs.translation))[..., :2]

    # loaders ---------------------------------------------------------------------------------------------
    @classmethod
    def ict(cls, path: str | os.PathLike | None = None, eyeballs: bool = True,
            detector_landmarks: bool = True) -> FaceModel:
        """ICT-FaceKit from the compact file (see `msma.assets.resolve_face_model_path`).

        ``detector_landmarks``: the 68 landmarks are the vertices measured to carry each iBUG point as 68-point
        detectors place it (`IBUG_TABLE_PATH`, scripts/derive_ibug_ict.py); False keeps ICT's own markup.
        """
        data = np.load(resolve_face_model_path(path))
        neutral = data["neutral"].astype(np.float64) * CM_TO_MODEL_UNITS
        vertex_region = data["vertex_region"]
        face = np.flatnonzero(vertex_region == 0)
        centre = neutral[face].mean(axis=0)
        mean = (neutral - centre).astype(np.float32)
        triangles = data["triangles"].astype(np.int64)
        region_names = [str(n) for n in data["region_names"]]
        eye_codes = [region_names.index("eyeball_left"), region_names.index("eyeball_right")]
        skin = ~np.isin(data["triangle_region"], eye_codes)
        keep = np.ones(len(triangles), bool) if eyeballs else skin
        n = len(mean)
        lap = data["albedo_laplacian"].astype(np.float32)  # (77, N)
        albedo_basis = np.zeros((3 + N_LAPLACIAN_MODES, n, 3), np.float32)
        albedo_basis[0:3] = np.eye(3, dtype=np.float32)[:, None, :] * 0.1  # global colour shift per channel
        skin_direction = np.asarray(MEAN_SKIN_ALBEDO, np.float32) / np.linalg.norm(MEAN_SKIN_ALBEDO)
        albedo_basis[3:] = lap[:, :, None] * skin_direction * ALBEDO_MODE_SCALE
        albedo_mean = np.tile(np.asarray(MEAN_SKIN_ALBEDO, np.float32), (n, 1))
        eyes = np.isin(vertex_region, [2, 3])
        albedo_mean[eyes] = (0.85, 0.82, 0.80)
        albedo_basis[3:, eyes] = 0.0
        return cls(
            mean=mean,
            identity_basis=data["identity_basis"].astype(np.float32) * CM_TO_MODEL_UNITS,
            expression_basis=data["expression_basis"].astype(np.float32) * CM_TO_MODEL_UNITS,
            albedo_mean=albedo_mean,
            albedo_basis=albedo_basis,
            triangles=triangles[keep],
            landmarks68=detector_landmarks68(data["landmarks68"], n) if detector_landmarks else data["landmarks68"],
            markup_landmarks68=data["landmarks68"],
            expression_names=[str(n) for n in data["expression_names"]],
            info=FaceModelInfo("ict", str(resolve_face_model_path(path)), "MIT (ICT-FaceKit)"),
            expression_range=(0.0, 1.0),
            uv=data["uv"],
            triangle_uv_index=data["triangle_uv_index"][keep],
            skin_triangles=skin[keep],
            face_vertices=face,
            rigid_vertices=data["rigid_vertices"],
            narrow_face_vertices=data["narrow_face"] if "narrow_face" in data else None,
            # Project choice: the ICT head is real-size; a camera 12 dm away leaves a margin around the face in
            # the 224 crop at zero translation (Deep3DFaceRecon's BFM setup uses 10).
            camera=Camera(distance=12.0),
        )

    @classmethod
    def bfm(cls, path: str | os.PathLike) -> FaceModel:
        """BFM09 in Deep3DFaceRecon's ``BFM_model_front.mat`` layout (the paper's configuration)."""
        from scipy.io import loadmat

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"BFM file not found: {path}")
        mat = loadmat(str(path))
        required = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "keypoints")
        missing = [k for k in required if k not in mat]
        if missing:
            raise ValueError(f"{path} is not a BFM_model_front.mat file: missing {missing}")
        mean = mat["meanshape"].reshape(-1, 3).astype(np.float64)
        mean = (mean - mean.mean(axis=0, keepdims=True)).astype(np.float32)
        n = len(mean)

        def basis(name: str) -> np.ndarray:  # (3N, K) -> (K, N, 3)
            return mat[name].astype(np.float32).T.reshape(-1, n, 3)

        skin = None
        if "skinmask" in mat:
            skin_vertices = mat["skinmask"].reshape(-1).astype(bool)
            tri = mat["tri"].astype(np.int64) - 1
            skin = skin_vertices[tri].all(axis=1)
        return cls(
            mean=mean,
            identity_basis=basis("idBase"),
            expression_basis=basis("exBase"),
            albedo_mean=mat["meantex"].reshape(-1, 3).astype(np.float32) / 255.0,
            albedo_basis=basis("texBase") / 255.0,
            triangles=mat["tri"].astype(np.int64) - 1,
            landmarks68=mat["keypoints"].reshape(-1).astype(np.int64) - 1,
            expression_names=[f"exp_{i:02d}" for i in range(mat["exBase"].shape[1])],
            info=FaceModelInfo("bfm09", str(path), "Basel Face Model licence (user supplied)"),
            expression_range=None,
            skin_triangles=skin,
        )


def load_face_model(name_or_path: str | None = None) -> FaceModel:
    """``None``/``"ict"`` -> bundled ICT; a ``.mat`` path -> BFM09; another path -> an ICT-layout npz."""
    if name_or_path in (None, "ict"):
        return FaceModel.ict()
    if str(name_or_path).endswith(".mat"):
        return FaceModel.bfm(name_or_path)
    return FaceModel.ict(name_or_path)
