"""Defaults shared by the API, the CLI and the app, importable without torch (the app reads them to build its page
before the models load). ``msma.api`` re-exports all of them."""

from __future__ import annotations

from pathlib import Path

REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS_NAME = "msma_light.safetensors"
WEIGHTS_ENV = "MSMA_WEIGHTS"
WEIGHTS_REPO_ENV = "MSMA_WEIGHTS_REPO"
METHODS = ("auto", "network", "network+refine", "fitting")
# What "auto" runs. network+refine is a little closer on the out-of-model SFM renders
# (benchmarks/results/sfm_3d_test.md), but its shapes separate people far worse on real photos
# (benchmarks/results/identity_roc*.json); docs/ACCURACY.md, "Results", weighs the two.
DEFAULT_METHOD = "fitting"
