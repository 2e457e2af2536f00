"""Calibrated trust of a network's identity / expression heads (msma.net.trust) and its use by the Reconstructor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from msma.face_model import Coefficients, FaceModel
from msma.identity_calibration import file_sha256
from msma.net.trust import TRUST_FILE, PriorTrust, load_trust, measure_trust, write_trust_entry

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "weights" / "msma_light.safetensors"


def test_apply_scales_identity_and_dead_zones_expression():
    coeffs = Coefficients(identity=torch.tensor([[1.0, -2.0]]), expression=torch.tensor([[0.05, 0.2, 1.0]]),
                          texture=torch.zeros(1, 1), angles=torch.zeros(1, 3), translation=torch.zeros(1, 3),
                          lighting=torch.zeros(1, 27))
    out = PriorTrust(identity=0.5, expression=0.8, expression_threshold=0.1).apply(coeffs)
    assert torch.allclose(out.identity, torch.tensor([[0.5, -1.0]]))
    # below the dead zone -> 0; above: (w - t) / (1 - t) x trust; full weight stays reachable (x trust)
    assert torch.allclose(out.expression, torch.tensor([[0.0, 0.8 * 0.1 / 0.9, 0.8]]))
    assert torch.equal(coeffs.identity, torch.tensor([[1.0, -2.0]]))  # the input is not modified
    same = PriorTrust().apply(coeffs)
    assert torch.equal(same.identity, coeffs.identity) and torch.equal(same.expression, coeffs.expression)


def test_table_lookup_by_file_content(tmp_path):
    weights = tmp_path / "net.safetensors"
    weights.write_bytes(b"some weights")
    table = tmp_path / "trust.json"
    assert load_trust(weights, table) == PriorTrust()  # no entry: full trust
    write_trust_entry(weights, {"identity": 0.3, "expression": 0.0, "expression_threshold": 0.2, "seed": 1, "n": 2},
                      table)
    trust = load_trust(weights, table)
    assert (trust.identity, trust.expression, trust.expression_threshold) == (0.3, 0.0, 0.2)
    weights.write_bytes(b"other weights")  # a different file with the same name has no entry
    assert load_trust(weights, table).identity == 1.0


class _NoiseNetwork(torch.nn.Module):
    """Answers random identity and a constant 0.03 on every blendshape: a head that learnt nothing."""

    def __init__(self, model: FaceModel) -> None:
        super().__init__()
        self.model = model
        self.config = type("Config", (), {"image_size": 64})()

    def forward(self, images):
        b = images.shape[0]
        gen = torch.Generator().manual_seed(b)
        return {"identity": torch.randn(b, self.model.n_identity, generator=gen) * 1.5,
                "expression": torch.full((b, self.model.n_expression), 0.03)}


def test_measure_trust_distrusts_heads_that_learnt_nothing():
    model = FaceModel.ict()
    entry = measure_trust(_NoiseNetwork(model), model, n=8, batch=8)
    assert entry["identity"] == 0.0  # noise identity: the mean face is better
    errors = entry["identity_vertex_error_mm"]
    assert errors[0] < errors[-1]
    # a constant answer on sparse weights is worse than neutral; the calibration must fall back to neutral
    assert entry["expression_mae_untouched"] > entry["expression_mae_neutral"]
    assert entry["expression_mae_best"] == pytest.approx(entry["expression_mae_neutral"], abs=1e-6)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped weights absent")
def test_reconstructor_applies_the_committed_calibration():
    from msma.api import Reconstructor

    table = json.loads(TRUST_FILE.read_text())
    entry = table[file_sha256(SHIPPED)]  # the shipped weights are calibrated
    rec = Reconstructor(method="network", weights=SHIPPED)
    assert rec.prior_trust.identity == entry["identity"]
    crop = (np.random.default_rng(0).random((1, 224, 224, 3)) * 255).astype(np.uint8)
    raw, calibrated = rec.predict(crop, raw=True), rec.predict(crop)
    assert torch.allclose(calibrated.identity, raw.identity * entry["identity"])
    assert torch.allclose(calibrated.expression, rec.prior_trust.scale_expression(raw.expression))
    assert torch.equal(calibrated.angles, raw.angles)  # pose, albedo and light are not touched
    assert "identity" in rec.describe()["network trust"]
