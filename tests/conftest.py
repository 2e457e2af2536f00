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


@pytest.fixture(scope="module")
def browser_paths():
    """(chromium binary, chromedriver) for the browser tests; skips when either, or selenium, is missing."""
    from test_app_browser import find_browser  # tests/ is on sys.path (rootdir conftest)

    found = find_browser()
    if found is None:
        pytest.skip("chromium + chromedriver not installed (run .ci/install_browser.sh)")
    pytest.importorskip("selenium")
    return found
