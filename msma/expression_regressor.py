"""ARKit expression weights read off mediapipe's 478 mesh points by a small learnt network.

A detector does not move its points the way ICT's blendshapes move the surface (it pulls lips, lids and brows towards
its own average face), so the model-based fit sees little of an expression in them. This regressor is trained on
synthetic renders whose weights are known (`scripts/derive_expression_regressor.py`, seed 78, no evaluation data)
and learns the detector's own response to each expression. Features: the mesh points and their depth, centred,
rotated so that the outer eye corners are level and scaled to unit RMS radius (so the crop's size and roll do not
matter; yaw and pitch stay in the features and the network learns them).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msma.landmarks.flip import MESH_MIRROR

__all__ = ["REGRESSOR_PATH", "ExpressionRegressor", "ExpressionRegressorNet", "expression_mirror",
           "ict_expression_names", "mesh_features", "mirror_mesh"]

REGRESSOR_PATH = Path(__file__).resolve().parent / "data" / "expression_regressor.npz"
OUTER_EYE_CORNERS = (33, 263)  # mediapipe mesh: the person's right and left outer eye corners
_SWAP = {"jawLeft": "jawRight", "mouthLeft": "mouthRight"}


@functools.cache
def ict_expression_names() -> tuple[str, ...]:
    """The ICT / ARKit blendshape order the regressor is trained in (read once from the compact model file)."""
    return tuple(str(n) for n in np.load(Path(__file__).resolve().parent / "data" / "ict_face_compact.npz")[
        "expression_names"])


@functools.cache
def _ict_expression_mirror() -> np.ndarray:
    return expression_mirror(list(ict_expression_names()))


def expression_mirror(names: list[str] | None = None) -> np.ndarray:
    """Index permutation of the ARKit weights under a left/right mirror (_L <-> _R, jawLeft <-> jawRight, ...);
    ``names`` None: the ICT order (`ict_expression_names`), computed once."""
    if names is None:
        return _ict_expression_mirror().copy()
    pairs = {**_SWAP, **{v: k for k, v in _SWAP.items()}}
    out = []
    for name in names:
        if name in pairs:
            other = pairs[name]
        elif name.endswith("_L"):
            other = name[:-2] + "_R"
        elif name.endswith("_R"):
            other = name[:-2] + "_L"
        else:
            other = name
        out.append(names.index(other))
    return np.array(out)


def mirror_mesh(dense: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, 478, 2) points and (S, 478) depth of the mirror image (x -> -x; features are centred, so the width does
    not matter), each point taking its left/right partner's place."""
    out = np.array(dense, np.float64)[:, MESH_MIRROR]
    out[..., 0] = -out[..., 0]
    return out, np.array(depth, np.float64)[:, MESH_MIRROR]


def mesh_features(dense: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(S, 478, 2) crop / photo points and (S, 478) depth (same pixels) -> (S, 1434) pose-normalised features."""
    pts = np.asarray(dense, np.float64).reshape(-1, 478, 2)
    z = np.asarray(depth, np.float64).reshape(-1, 478)
    pts = pts - pts.mean(1, keepdims=True)
    z = z - z.mean(1, keepdims=True)
    scale = np.sqrt((pts ** 2).sum(2).mean(1)).clip(1e-9)[:, None]
    eye = pts[:, OUTER_EYE_CORNERS[1]] - pts[:, OUTER_EYE_CORNERS[0]]
    roll = np.arctan2(eye[:, 1], eye[:, 0])
    c, s = np.cos(-roll)[:, None], np.sin(-roll)[:, None]
    x = c * pts[..., 0] - s * pts[..., 1]
    y = s * pts[..., 0] + c * pts[..., 1]
    return np.concatenate([x / scale, y / scale, z / scale], axis=1).astype(np.float32)


class ExpressionRegressorNet(nn.Module):
    """Standardised features -> two hidden layers -> 53 logits (sigmoid: weights in [0, 1])."""

    def __init__(self, n_features: int, hidden: int, n_outputs: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_outputs))

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers((features - self.mean) / self.std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(features))


class ExpressionRegressor:
    """The trained network with its file I/O; ``predict(dense, depth)`` -> (53,) weights for one face."""

    def __init__(self, net: ExpressionRegressorNet, report: dict | None = None) -> None:
        self.net = net.eval()
        self.report = report or {}

    @classmethod
    def load(cls, path: str | Path = REGRESSOR_PATH) -> ExpressionRegressor:
        data = np.load(path)
        shapes = json.loads(str(data["config"]))
        net = ExpressionRegressorNet(shapes["n_features"], shapes["hidden"], shapes["n_outputs"])
        net.load_state_dict({k: torch.as_tensor(data[k]) for k in net.state_dict()})
        return cls(net, json.loads(str(data["report"])))

    def save(self, path: str | Path, report: dict) -> None:
        first, last = self.net.layers[1], self.net.layers[-1]
        config = {"n_features": first.in_features, "hidden": first.out_features, "n_outputs": last.out_features}
        state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.net.state_dict().items()}
        np.savez_compressed(path, config=json.dumps(config), report=json.dumps(report), **state)

    @torch.no_grad()
    def predict_features(self, features: np.ndarray) -> np.ndarray:
        return self.net(torch.as_tensor(np.asarray(features, np.float32))).numpy()

    def predict(self, dense: np.ndarray, depth: np.ndarray, mirror_average: bool = True) -> np.ndarray:
        """(478, 2) mesh points and (478,) depth of one face -> (53,) ARKit weights in [0, 1]; ``mirror_average``
        also reads the mirrored points and averages (the network is not exactly mirror-equivariant)."""
        dense = np.asarray(dense, np.float64)[None, :478]
        depth = np.asarray(depth, np.float64)[None, :478]
        out = self.predict_features(mesh_features(dense, depth))[0]
        if mirror_average:
            mirrored = self.predict_features(mesh_features(*mirror_mesh(dense, depth)))[0]
            out = 0.5 * (out + mirrored[expression_mirror()])
        return out


def clearest_blendshapes(min_correlation: float = 0.5, path: str | Path = REGRESSOR_PATH) -> tuple[str, ...]:
    """The blendshapes whose predicted and true weights correlate at least ``min_correlation`` on the regressor's own
    held-out renders (its stored report; synthetic seed 78, no evaluation data), in the model's order."""
    correlation = json.loads(str(np.load(path)["report"])).get("correlation", {})  # the report only, not the net
    return tuple(name for name in ict_expression_names() if correlation.get(name, 0.0) >= min_correlation)
