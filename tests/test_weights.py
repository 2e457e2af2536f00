"""The weights shipped in weights/ load and reconstruct the bundled example photo (no ../shared needed): their pose
agrees with the landmark fit's and their reprojected landmarks are close to the detected ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from msma.api import REPO_WEIGHTS_DIR, Reconstructor
from msma.fit import PhotometricSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "01_portrait.jpg"


@pytest.fixture(scope="module")
def fitted():
    fitting = Reconstructor(method="fitting", photometric_settings=PhotometricSettings(iterations=5), texture_size=256)
    return fitting(EXAMPLE, texture=False)[0]


# measured on this photo: pose within 4 degrees of the fit, landmark error 3.7 / 3.9 px (the fit: 3.4 px)
@pytest.mark.parametrize("name", ["msma_light.safetensors", "plain_light.safetensors"])
def test_shipped_weights_reconstruct_the_example(fitted, name: str) -> None:
    path = REPO_WEIGHTS_DIR / name
    if not path.is_file():
        pytest.skip(f"weights/{name} is not in this checkout")
    network = Reconstructor(method="network", weights=path, texture_size=256)
    assert name.split(".")[0] in network.describe()["weights"]
    face = network(EXAMPLE, texture=False)[0]
    assert face.method == "network"
    for angle in ("yaw", "pitch", "roll"):
        assert abs(getattr(face.pose, angle) - getattr(fitted.pose, angle)) < 10, angle
    assert face.landmark_error_px < 2 * fitted.landmark_error_px
