from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, present on build machines only."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available on this machine")
    return path


@pytest.fixture(scope="session")
def ict():
    """The bundled ICT face model, loaded once for the whole test session (tests must not modify it)."""
    from msma.face_model import FaceModel

    return FaceModel.ict()


@pytest.fixture(scope="session")
def model(ict):
    return ict
