"""dlib's face-recognition ResNet (128-D embeddings, 99.38 % on LFW) ported to torch, from the file shipped offline in
the ``face-recognition-models`` package (``dlib_face_recognition_resnet_model_v1.dat``).

    from msma.face_embedding import DlibFaceEmbedder
    net = DlibFaceEmbedder.from_package()        # or DlibFaceEmbedder.from_file(path)
    emb = net(chips)                             # chips (B, 3, 150, 150) RGB float in [0, 255] -> (B, 128)
    emb = net.embed_uint8(chips_hwc)             # uint8 (B, 150, 150, 3), e.g. from dlib.get_face_chip

The weights are read straight from dlib's serialisation (no dlib needed at run time). Architecture (dlib's
dnn_face_recognition_ex): 7x7/2 conv 32 -> 3x3/2 max pool -> residual stages 32 x3, 64 x4, 128 x3, 256 x3, 256 x1
(the first block of stages 2-5 strided; its shortcut a 2x2/2 average pool whose extra channels are zero) -> global
average -> 128-D linear. dlib semantics kept: strided convolutions and pools have no padding, batch norm is a
per-channel affine, and a residual sum takes the larger size of its two inputs (the other zero-padded).
Input: (pixel - dataset mean) / 256 per RGB channel. Embeddings are not normalised (dlib's distance threshold 0.6
is on raw Euclidean distance).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance of two embeddings

_LAYER = re.compile(rb"\x01[\x04-\x20](con_\d|affine_\d?|fc_\d|relu_\d?|max_pool_\d|avg_pool_\d|add_prev_\d?|"
                    rb"input_rgb_image_sized)")


def package_model_path(name: str = MODEL_FILE) -> Path:
    """Path of a model file (default: the ResNet's) inside the installed ``face_recognition_models`` package
    (FileNotFoundError if not)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the face_recognition_models package is not installed (pip install "
                                "face-recognition-models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the face_recognition_models package")
    return path


class DlibChipper:
    """dlib's face chip (its 5-point predictor and ``get_face_chip``, the framing the ResNet was trained on) of a
    face-centred crop such as the 5-point aligned 224 crop; needs dlib at run time."""

    def __init__(self, size: int = CHIP_SIZE) -> None:
        import dlib

        self.dlib = dlib
        self.size = size
        self.shape5 = dlib.shape_predictor(str(package_model_path("shape_predictor_5_face_landmarks.dat")))

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8 chip of a uint8 RGB crop whose face fills its central 64 %."""
        h, w = crop.shape[:2]
        box = self.dlib.rectangle(int(0.18 * w), int(0.18 * h), int(0.82 * w), int(0.82 * h))
        crop = np.ascontiguousarray(crop)
        return self.dlib.get_face_chip(crop, self.shape5(crop, box), size=self.size)


class _Reader:
    """dlib's serialisation: integers as a control byte (low nibble: byte count, 0x80: negative) + little-endian
    bytes; strings as length + bytes; floats as mantissa + base-2 exponent integers; tensors as version,
    (num_samples, k, nr, nc) and raw little-endian float32."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def int(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("truncated dlib model file")
        c = self.data[self.pos]
        n = c & 0x0F
        v = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if c & 0x80 else v

    def str(self) -> str:
        n = self.int()
        s = self.data[self.pos : self.pos + n].decode("latin1")
        self.pos += n
        return s

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ValueError("unsupported dlib tensor version")
        dims = [self.int() for _ in range(4)]
        n = int(np.prod(dims))
        arr = np.frombuffer(self.data, "<f4", count=n, offset=self.pos).copy()
        self.pos += 4 * n
        return arr


@dataclass
class _Conv:
    weight: np.ndarray  # (out, in, k, k)
    bias: np.ndarray
    stride: int
    padding: int


def _parse(path: str | os.PathLike) -> tuple[np.ndarray, list]:
    """(input mean RGB (3,), ordered layers from the input outward: _Conv, ("affine", gamma, beta), "relu",
    ("max_pool" | "avg_pool", window, stride), "add_prev", ("fc", W (in, out)))."""
    data = Path(path).read_bytes()
    if b"loss_metric" not in data[:64]:
        raise ValueError(f"{path} is not a dlib metric-learning network file")
    layers: list = []
    mean = None
    prev_c = 3
    for m in _LAYER.finditer(data):
        r = _Reader(data, m.start())
        name = r.str()
        if name == "input_rgb_image_sized":
            mean = np.array([r.float(), r.float(), r.float()], np.float32)
        elif name.startswith("con_"):
            params = r.tensor()
            n, kh, kw, sy, sx, py, px = (r.int() for _ in range(7))
            if kh != kw or sy != sx or py != px:
                raise ValueError("non-square convolution in the dlib model")
            w = params[: n * prev_c * kh * kw].reshape(n, prev_c, kh, kw)
            layers.append(_Conv(w, params[n * prev_c * kh * kw :], sy, py))
            prev_c = n
        elif name.startswith("affine_"):
            params = r.tensor()
            half = len(params) // 2
            layers.append(("affine", params[:half], params[half:]))
        elif name.startswith("relu"):
            layers.append("relu")
        elif name.startswith(("max_pool", "avg_pool")):
            wy, wx, sy, sx, py, px = (r.int() for _ in range(6))
            layers.append((name[:8], wy, sy))
        elif name.startswith("add_prev"):
            layers.append("add_prev")
        elif name.startswith("fc_"):
            n_out, n_in = r.int(), r.int()
            layers.append(("fc", r.tensor()[: n_in * n_out].reshape(n_in, n_out)))
    if mean is None or not layers or layers[-1][0] != "fc":
        raise ValueError(f"{path}: unexpected dlib network layout")
    return mean, layers


class _Affine(nn.Module):
    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.from_numpy(gamma).view(1, -1, 1, 1))
        self.beta = nn.Parameter(torch.from_numpy(beta).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(c: _Conv) -> nn.Conv2d:
    conv = nn.Conv2d(c.weight.shape[1], c.weight.shape[0], c.weight.shape[2], stride=c.stride, padding=c.padding)
    conv.weight.data = torch.from_numpy(c.weight)
    conv.bias.data = torch.from_numpy(c.bias)
    return conv


class _Residual(nn.Module):
    """conv-affine-relu-conv-affine, plus the (average-pooled) input. dlib's add_prev: the sum has the larger size
    of the two in every dimension, the smaller one zero-padded (channels and, at 8 px, a 3x3 branch + 4x4 pool)."""

    def __init__(self, c1: _Conv, a1, c2: _Conv, a2, pool: tuple | None) -> None:
        super().__init__()
        self.main = nn.Sequential(_conv(c1), _Affine(*a1[1:]), nn.ReLU(), _conv(c2), _Affine(*a2[1:]))
        self.pool = pool  # (window, stride) of the shortcut's average pool, or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        s = F.avg_pool2d(x, self.pool[0], self.pool[1]) if self.pool else x
        size = [max(a, b) for a, b in zip(y.shape[1:], s.shape[1:])]

        def padded(t):
            return F.pad(t, (0, size[2] - t.shape[3], 0, size[1] - t.shape[2], 0, size[0] - t.shape[1]))

        return torch.relu(padded(y) + padded(s))


class DlibFaceEmbedder(nn.Module):
    """forward(chips (B, 3, 150, 150) RGB float in [0, 255]) -> (B, 128) embeddings (dlib's face descriptor)."""

    def __init__(self, mean: np.ndarray, layers: list) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean).view(1, 3, 1, 1))
        it = iter(layers)
        c0, a0, r0, pool0 = next(it), next(it), next(it), next(it)
        if not (isinstance(c0, _Conv) and r0 == "relu" and pool0[0] == "max_pool"):
            raise ValueError("unexpected stem in the dlib model")
        self.stem = nn.Sequential(_conv(c0), _Affine(*a0[1:]), nn.ReLU(), nn.MaxPool2d(pool0[1], pool0[2]))
        blocks = []
        rest = list(it)
        i = 0
        while isinstance(rest[i], _Conv):
            c1, a1, _, c2, a2 = rest[i : i + 5]
            i += 5
            pool = None
            if isinstance(rest[i], tuple) and rest[i][0] == "avg_pool":
                pool = (rest[i][1], rest[i][2])
                i += 1
            if rest[i] != "add_prev" or rest[i + 1] != "relu":
                raise ValueError("unexpected residual block layout in the dlib model")
            i += 2
            blocks.append(_Residual(c1, a1, c2, a2, pool))
        self.blocks = nn.Sequential(*blocks)
        if rest[i][:2] != ("avg_pool", 0) or rest[i + 1][0] != "fc":  # avg_pool_everything -> fc
            raise ValueError("unexpected head in the dlib model")
        fc = rest[-1][1]
        self.fc = nn.Linear(fc.shape[0], fc.shape[1], bias=False)
        self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(fc.T))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DlibFaceEmbedder:
        return cls(*_parse(path))

    @classmethod
    def from_package(cls) -> DlibFaceEmbedder:
        return cls.from_file(package_model_path())

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1] != 3:
            raise ValueError(f"expected chips of shape (B, 3, H, W), got {tuple(chips.shape)}")
        x = (chips - self.mean) / 256.0
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))

    @torch.no_grad()
    def embed_uint8(self, chips: np.ndarray) -> np.ndarray:
        """uint8 (B, 150, 150, 3) RGB chips (dlib.get_face_chip) -> float32 (B, 128)."""
        x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float().to(self.mean.device)
        return self(x).cpu().numpy()


def embedding_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor):
    """Euclidean distance of embeddings (dlib's metric; < SAME_PERSON_DISTANCE means the same person)."""
    if isinstance(a, torch.Tensor):
        return (a - b).norm(dim=-1)
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)
