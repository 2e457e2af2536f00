"""`Reconstructor.reconstruct_many` / `estimate_many`: batched photos give what `__call__` gives photo by photo, and
a failed photo is a `PhotoFailure` in its place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msma import NoFaceError, Reconstructor
from msma.api import PhotoEstimate, PhotoFailure, ReconstructionResult
from msma.fit import PhotometricSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Three example photos at 320 px (one of them a couple: two faces)."""
    out = []
    for name in ("01_portrait.jpg", "03_couple.jpg", "02_portrait.jpg"):
        image = Image.open(EXAMPLES / name).convert("RGB")
        image.thumbnail((320, 320))
        out.append(np.asarray(image))
    return out


@pytest.fixture(scope="module")
def network() -> Reconstructor:
    return Reconstructor(method="network", detector="dlib")


@pytest.fixture(scope="module")
def fitting(network) -> Reconstructor:
    return Reconstructor(method="fitting", detector="dlib", face_model=network.model,
                         photometric_settings=PhotometricSettings(texture_iterations=3))


def _assert_same(single: ReconstructionResult, batched: ReconstructionResult, atol: float) -> None:
    assert len(single) == len(batched)
    for a, b in zip(single, batched):
        for key, value in a.coefficients.as_dict().items():
            np.testing.assert_allclose(value.numpy(), b.coefficients.as_dict()[key].numpy(), atol=atol)
        np.testing.assert_allclose(a.fitted_landmarks, b.fitted_landmarks, atol=100 * atol)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=atol)
        assert a.blendshapes == pytest.approx(b.blendshapes, abs=atol)
        assert a.method == b.method and a.index == b.index


@pytest.mark.parametrize("method", ["network", "fitting"])
def test_batched_photos_match_one_by_one(photos, method, request):
    reconstructor = request.getfixturevalue(method)
    single = [reconstructor(photo, texture=False) for photo in photos]
    batched = list(reconstructor.reconstruct_many(photos, batch_size=2, texture=False))
    assert len(batched) == 3 and len(batched[1]) == 2
    for a, b in zip(single, batched):
        _assert_same(a, b, atol=1e-4)
        assert b.timings["detect"] > 0 and ("network" in b.timings) == (method == "network")
    estimates = list(reconstructor.estimate_many(photos, batch_size=8))
    assert all(isinstance(e, PhotoEstimate) for e in estimates)
    for estimate, result in zip(estimates, batched):
        for face, built in zip(estimate.faces, result):
            np.testing.assert_allclose(face.fitted_landmarks, built.fitted_landmarks, atol=1e-3)
            assert face.landmark_error_px == pytest.approx(built.landmark_error_px, abs=1e-3)


def test_failures_in_place(photos, network, tmp_path):
    reconstructor = network
    blank = np.full((96, 96, 3), 128, np.uint8)
    items = [photos[0], b"not an image", blank, photos[2], tmp_path / "missing.jpg"]
    out = list(reconstructor.reconstruct_many(items, batch_size=2, texture=False, errors="return"))
    assert [type(o).__name__ for o in out] == ["ReconstructionResult", "PhotoFailure", "PhotoFailure",
                                               "ReconstructionResult", "PhotoFailure"]
    assert [o.index for o in out if isinstance(o, PhotoFailure)] == [1, 2, 4]
    assert "ImageLoadError" in out[1].message and isinstance(out[2].error, NoFaceError)
    assert str(tmp_path / "missing.jpg") == out[4].source
    with pytest.raises(NoFaceError):
        list(reconstructor.reconstruct_many([photos[0], blank], texture=False))
    with pytest.raises(ValueError, match="batch_size"):
        list(reconstructor.reconstruct_many([photos[0]], batch_size=0))
