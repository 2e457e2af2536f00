"""How far a network's identity and expression outputs can be trusted, measured on held-out synthetic faces.

A head that learnt little still answers something: the shipped light network's identity is noise around the mean
face and its expression a constant ~0.03 on every blendshape (weights/README.md, "Issue 10"). Used as they are, the
``network`` method returns that noise and ``network+refine`` centres the fitter's prior on it, which made it worse
than fitting from the mean face. The trust of a head is the factor c in [0, 1] that scales its output towards the
prior (the mean face, neutral) and minimises the error on synthetic faces with known answers:

* identity: mean face-region vertex error (mm) of the neutral shape with c x identity;
* expression: mean absolute error of c x the 53 weights, after a dead zone t (weights below t answered 0).

c = 1 keeps the network as it is, c = 0 says the head knows nothing (the fitter then starts from the mean face and
neutral, as ``fitting`` does; the network still gives pose, albedo and lighting). The calibration uses seed
`CALIBRATION_SEED`, not the benchmark's held-out seed 1000 (`benchmarks/synthetic_3d.py`), and writes one entry per
weights file (keyed by the file's SHA-256) to ``msma/data/network_trust.json``:

    python scripts/calibrate_network_trust.py weights/msma_light.safetensors weights/plain_light.safetensors

Weights without an entry are trusted fully (c = 1): a network trained elsewhere is the user's to judge.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msma.face_model import Coefficients, FaceModel
from msma.identity_calibration import file_sha256

TRUST_FILE = Path(__file__).resolve().parents[1] / "data" / "network_trust.json"
CALIBRATION_SEED = 1500
TRUST_GRID = tuple(round(float(c), 2) for c in np.linspace(0.0, 1.0, 11))


THRESHOLD_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


@dataclass(frozen=True)
class PriorTrust:
    """identity' = identity x ``identity``; expression' = ``expression`` x max(w - t, 0) / (1 - t) with
    t = ``expression_threshold`` (a dead zone: a sparse weight the network is unsure about is better answered 0)."""

    identity: float = 1.0
    expression: float = 1.0
    expression_threshold: float = 0.0
    source: str = "default (no calibration entry: trusted fully)"

    def scale_expression(self, weights: torch.Tensor) -> torch.Tensor:
        t = self.expression_threshold
        shifted = (weights - t).clamp_min(0) / (1 - t) if t > 0 else weights
        return shifted * self.expression if self.expression != 1.0 else shifted

    def apply(self, coeffs: Coefficients) -> Coefficients:
        """A copy of ``coeffs`` with identity and expression moved towards the mean face / neutral."""
        out = coeffs.clone()
        if self.identity != 1.0:
            out.identity = out.identity * self.identity
        out.expression = self.scale_expression(out.expression)
        return out


def read_trust_table(path: Path = TRUST_FILE) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def load_trust(weights_path: str | os.PathLike | None, table_path: Path = TRUST_FILE) -> PriorTrust:
    """The calibrated trust of a weights file (full trust when it has no entry or no file is given)."""
    if weights_path is None:
        return PriorTrust()
    entry = read_trust_table(table_path).get(file_sha256(weights_path))
    if entry is None:
        return PriorTrust()
    return PriorTrust(float(entry["identity"]), float(entry["expression"]), float(entry.get("expression_threshold", 0)),
                      f"{table_path.name}: {entry.get('name', '?')} (seed {entry.get('seed')}, n {entry.get('n')})")


@torch.no_grad()
def measure_trust(network, model: FaceModel, n: int = 256, seed: int = CALIBRATION_SEED, batch: int = 16,
                  backgrounds=None) -> dict:
    """The error of every trust setting on ``n`` synthetic faces of ``seed`` and the best setting of each head.
    Crops are rendered at 224 and resized to the network's input size (as `msma.api.Reconstructor.predict` does)."""
    from msma.synth import SyntheticFaceGenerator

    gen = SyntheticFaceGenerator(model, seed=seed, image_size=224, backgrounds=backgrounds)
    size = network.config.image_size
    face = model.face_vertices
    zeros = torch.zeros(1, model.n_expression)
    vertex_sums = torch.zeros(len(TRUST_GRID))
    predicted, true = [], []
    for start in range(0, n, batch):
        b = gen.render_indices(range(start, min(n, start + batch)))
        images = b.images
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                                     antialias=True)
        out = network(images)
        true_neutral = model(b.coefficients.identity, zeros.expand(len(images), -1))[:, face]
        for k, c in enumerate(TRUST_GRID):
            shape = model(out["identity"].float() * c, zeros.expand(len(images), -1))[:, face]
            vertex_sums[k] += float((shape - true_neutral).norm(dim=-1).mean(-1).sum()) * 100.0  # dm -> mm
        predicted.append(out["expression"].float())
        true.append(b.coefficients.expression)
    predicted, true = torch.cat(predicted), torch.cat(true)
    vertex = (vertex_sums / n).tolist()
    mae = {(c, t): float((PriorTrust(expression=c, expression_threshold=t).scale_expression(predicted) - true)
                         .abs().mean()) for c in TRUST_GRID for t in THRESHOLD_GRID}
    best_c, best_t = min(mae, key=mae.get)
    return {
        "identity": TRUST_GRID[int(np.argmin(vertex))], "expression": best_c, "expression_threshold": best_t,
        "seed": seed, "n": n, "grid": list(TRUST_GRID), "threshold_grid": list(THRESHOLD_GRID),
        "identity_vertex_error_mm": [round(v, 4) for v in vertex],
        "expression_mae_neutral": round(float(true.abs().mean()), 5),
        "expression_mae_untouched": round(mae[(1.0, 0.0)], 5),
        "expression_mae_best": round(mae[(best_c, best_t)], 5),
    }


def write_trust_entry(weights_path: str | os.PathLike, entry: dict, table_path: Path = TRUST_FILE) -> None:
    table = read_trust_table(table_path)
    table[file_sha256(weights_path)] = {"name": Path(weights_path).name, **entry}
    table_path.write_text(json.dumps(table) + "\n")


__all__ = ["CALIBRATION_SEED", "PriorTrust", "TRUST_FILE", "load_trust", "measure_trust",
           "write_trust_entry"]
