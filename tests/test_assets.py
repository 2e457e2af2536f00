from __future__ import annotations

import pytest

from msma import assets


def test_bundled_model_is_found_and_licensed(monkeypatch) -> None:
    monkeypatch.delenv(assets.FACE_MODEL_ENV, raising=False)
    assert assets.resolve_face_model_path() == assets.BUNDLED_FACE_MODEL
    assert (assets.DATA_DIR / "ICT-FaceKit-LICENSE").is_file()


def test_env_override_and_clear_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(assets.FACE_MODEL_ENV, str(tmp_path / "missing.npz"))
    with pytest.raises(assets.FaceModelNotFoundError, match="missing.npz"):
        assets.resolve_face_model_path()
    with pytest.raises(assets.FaceModelNotFoundError):
        assets.resolve_face_model_path(tmp_path / "nope.npz")


def test_hub_fallback_is_used_when_nothing_is_local(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(assets.FACE_MODEL_ENV, raising=False)
    monkeypatch.setattr(assets, "BUNDLED_FACE_MODEL", tmp_path / "absent.npz")
    calls = []
    monkeypatch.setattr(assets, "download_face_model", lambda repo_id: calls.append(repo_id) or tmp_path / "x.npz")
    monkeypatch.setenv(assets.FACE_MODEL_REPO_ENV, "someone/ict-face")
    assets.resolve_face_model_path()
    assert calls == ["someone/ict-face"]
    monkeypatch.delenv(assets.FACE_MODEL_REPO_ENV)
    with pytest.raises(assets.FaceModelNotFoundError, match="MSMA_FACE_MODEL"):
        assets.resolve_face_model_path()


def test_laplacian_basis_is_smooth_and_normalised() -> None:
    import numpy as np

    # a 10x10 grid of triangles
    n = 10
    idx = np.arange(n * n).reshape(n, n)
    tris = np.concatenate([
        np.stack([idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel()], 1),
        np.stack([idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()], 1),
    ])
    basis = assets.laplacian_basis(tris, n * n, 4)
    assert basis.shape == (4, n * n)
    np.testing.assert_allclose(np.sqrt((basis**2).mean(1)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(basis.mean(1), 0.0, atol=1e-4)  # orthogonal to the constant mode
