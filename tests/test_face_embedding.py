"""The torch port of dlib's face-recognition ResNet gives dlib's own descriptors (to 1e-4) and separates people."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")

from msma.face_embedding import DlibFaceEmbedder, embedding_distance, package_model_path  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces_in_the_wild"


@pytest.fixture(scope="module")
def models():
    try:
        path = package_model_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return DlibFaceEmbedder.from_file(path), dlib.face_recognition_model_v1(str(path)), path.parent


def test_matches_dlib_on_arbitrary_chips(models):
    net, rec, _ = models
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    chips[1] = np.linspace(0, 255, 150, dtype=np.uint8)[None, :, None]
    ref = np.stack([np.array(rec.compute_face_descriptor(c)) for c in chips])
    assert np.abs(net.embed_uint8(chips) - ref).max() < 1e-4


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not available")
def test_matches_dlib_on_photos_and_is_differentiable(models):
    from msma.image_io import load_image

    net, rec, folder = models
    sp = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    det = dlib.get_frontal_face_detector()
    chips = []
    for f in sorted(SHARED.glob("*.jpg"))[:8]:
        img = load_image(f)
        for r in det(img, 1)[:1]:
            chips.append(dlib.get_face_chip(img, sp(img, r), size=150))
    assert len(chips) >= 4
    chips = np.stack(chips)
    ref = np.stack([np.array(rec.compute_face_descriptor(c)) for c in chips])
    ours = net.embed_uint8(chips)
    assert np.abs(ours - ref).max() < 1e-4
    d = embedding_distance(ours[:, None], ours[None])
    assert np.allclose(np.diag(d), 0) and d.max() > 0.6  # some pairs are different people by dlib's threshold
    # usable as a perceptual loss: gradients reach the image
    x = torch.from_numpy(chips[:1]).permute(0, 3, 1, 2).float().requires_grad_(True)
    embedding_distance(net(x), torch.from_numpy(ref[1:2]).float()).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_rejects_foreign_file(tmp_path):
    bad = tmp_path / "x.dat"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a dlib"):
        DlibFaceEmbedder.from_file(bad)
