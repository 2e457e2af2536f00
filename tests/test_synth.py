"""Synthetic face generator: deterministic per seed, exact ground truth, npz cache round trip."""

from __future__ import annotations

import numpy as np
import torch

from msma.synth import SyntheticCache, SyntheticFaceGenerator, prerender_cache

SIZE = 48


def test_deterministic_per_seed(model):
    a = SyntheticFaceGenerator(model, seed=3, image_size=SIZE).sample(2)
    b = SyntheticFaceGenerator(model, seed=3, image_size=SIZE).sample(2)
    c = SyntheticFaceGenerator(model, seed=4, image_size=SIZE).sample(2)
    assert a.images.shape == (2, 3, SIZE, SIZE) and a.mask.shape == (2, SIZE, SIZE)
    assert torch.equal(a.images, b.images)
    for key, value in a.coefficients.as_dict().items():
        assert torch.equal(value, getattr(b.coefficients, key))
    assert not torch.equal(a.coefficients.identity, c.coefficients.identity)
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0


def test_sample_depends_only_on_seed_and_index(model):
    gen = SyntheticFaceGenerator(model, seed=5, image_size=SIZE, augment=False)
    first = gen.sample(3)
    again = SyntheticFaceGenerator(model, seed=5, image_size=SIZE, augment=False).render_indices([2])
    # batched and single renders round a few float values differently before uint8 quantisation: one step at most
    assert torch.allclose(first.images[2], again.images[0], rtol=0, atol=1.01 / 255)
    assert torch.equal(first.coefficients.angles[2], again.coefficients.angles[0])


def test_ground_truth_consistent(model):
    batch = SyntheticFaceGenerator(model, seed=1, image_size=SIZE).sample(3)
    coeffs = batch.coefficients
    projected = model.project_landmarks(coeffs) * (SIZE / model.camera.image_size)
    assert torch.allclose(projected, batch.landmarks2d, atol=1e-3)
    assert torch.allclose(model(coeffs.identity, coeffs.expression), batch.vertices, atol=1e-5)
    lo, hi = model.expression_range
    assert float(coeffs.expression.min()) >= lo and float(coeffs.expression.max()) <= hi
    assert float(coeffs.angles[:, 1].abs().max()) <= np.radians(60) + 1e-6
    # faces are placed like aligned photos: landmarks inside the crop
    assert float(batch.landmarks2d[..., :2].min()) > -SIZE * 0.2 and float(batch.landmarks2d.max()) < SIZE * 1.2
    assert batch.mask.any()


def test_backgrounds_folder_with_unreadable_file(model, tmp_path):
    from PIL import Image

    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    gen = SyntheticFaceGenerator(model, seed=0, image_size=SIZE, backgrounds=tmp_path)
    assert len(gen.backgrounds) == 1
    assert gen.sample(1).images.shape == (1, 3, SIZE, SIZE)


def test_cache_round_trip(model, tmp_path):
    paths = prerender_cache(model, tmp_path, n=5, seed=2, image_size=SIZE, shard_size=3, batch=3, progress=False)
    assert len(paths) == 2
    cache = SyntheticCache(tmp_path)
    assert len(cache) == 5 and cache.image_size == SIZE
    direct = SyntheticFaceGenerator(model, seed=2, image_size=SIZE).render_indices([4])
    item = cache[4]
    assert item["image"].shape == (3, SIZE, SIZE)
    assert torch.allclose(item["landmarks"], direct.landmarks2d[0], atol=1e-4)
    assert torch.allclose(item["identity"], direct.coefficients.identity[0], atol=1e-2)
    assert (item["image"] - direct.images[0]).abs().max() <= 1 / 255 + 1e-6
    # resumable: existing shards are kept
    assert prerender_cache(model, tmp_path, n=5, seed=2, image_size=SIZE, shard_size=3, progress=False) == paths


def test_vertex_albedo_from_photo_recovers_albedo(model):
    from msma.render import Renderer
    from msma.synth import vertex_albedo_from_photo

    gen = SyntheticFaceGenerator(model, seed=7, image_size=224, augment=False)
    batch = gen.sample(1)
    crop = (batch.images[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    albedo = vertex_albedo_from_photo(model, Renderer(224), crop, batch.coefficients)
    truth = model.albedo(batch.coefficients.texture)[0].numpy()
    lower_face = np.zeros(model.n_vertices, bool)
    lower_face[model.face_vertices.numpy()] = True
    lower_face &= model.mean[:, 1].numpy() < gen.eye_level - 0.1
    lower_face &= ~gen.eye
    ok = lower_face & (albedo.sum(-1) > 0)
    assert ok.sum() > 500
    assert np.median(np.abs(albedo[ok] - truth[ok])) < 0.03


def test_cache_batch_equals_stacked_items(tmp_path, model):
    prerender_cache(model, tmp_path / "c", n=4, seed=0, image_size=48, shard_size=2, progress=False)
    cache = SyntheticCache(tmp_path / "c")
    idx = [3, 0, 2]
    batch = cache.batch(idx)
    for key, value in batch.items():
        assert torch.equal(value, torch.stack([cache[i][key] for i in idx])), key


def test_texture_bank_from_photos_skips_photos_without_a_face(ict) -> None:
    """One skin albedo per photo with a face; a blank photo adds nothing."""
    from pathlib import Path

    from msma.image_io import load_image
    from msma.synth import texture_bank_from_photos

    portrait = load_image(Path(__file__).resolve().parents[1] / "examples" / "01_portrait.jpg")
    bank = texture_bank_from_photos(ict, [portrait, np.zeros((200, 200, 3), np.uint8)])
    assert bank.shape == (1, ict.n_vertices, 3)
    assert np.isfinite(bank.astype(np.float32)).all() and 0 <= bank.min() and bank.max() <= 1


def test_facial_features_paint_brows_and_lips_only(ict):
    """`facial_features=True` keeps every seeded choice (shape, expression, pose, light) and changes the pixels only
    where the brows and lips are: their vertices darken, the rest of the face keeps its colour; it is off by
    default, and a texture-bank skin (the person's own brows and lips) is left as it is."""
    plain = SyntheticFaceGenerator(ict, seed=11, image_size=SIZE, augment=False)
    painted = SyntheticFaceGenerator(ict, seed=11, image_size=SIZE, augment=False, facial_features=True)
    assert not plain.facial_features
    a, b = plain.render_indices([0, 1]), painted.render_indices([0, 1])
    torch.testing.assert_close(a.coefficients.identity, b.coefficients.identity)
    torch.testing.assert_close(a.coefficients.expression, b.coefficients.expression)
    torch.testing.assert_close(a.vertices, b.vertices)
    assert (a.images - b.images).abs().amax() > 0.05
    brow, lip = painted.brow_weight > 0.5, painted.lip_weight > 0.5
    assert 50 < brow.sum() < 2000 and 50 < lip.sum() < 3000 and not (brow & lip).any()
    mean = ict.mean.cpu().numpy()
    lm = mean[ict.landmarks68.cpu().numpy()]
    assert mean[brow, 1].min() > lm[36:48, 1].max()  # brows above the eyes
    assert lm[48:60, 1].min() <= mean[lip, 1].mean() <= lm[48:60, 1].max()  # lips between the lip corners' rows
    albedo = torch.full((len(mean), 3), 0.6)
    params = painted.sample_parameters(0)
    out = painted._paint_features(albedo, params)
    assert torch.all(out[torch.as_tensor(brow)] < 0.6) and torch.all(out[torch.as_tensor(lip)] < 0.6)
    untouched = torch.as_tensor((painted.brow_weight == 0) & (painted.lip_weight == 0))
    torch.testing.assert_close(out[untouched], albedo[untouched])
    bank = np.full((1, len(mean), 3), 0.5, np.float32)
    with_bank = SyntheticFaceGenerator(ict, seed=11, image_size=SIZE, augment=False, texture_bank=bank,
                                       bank_probability=1.0, facial_features=True)
    without = SyntheticFaceGenerator(ict, seed=11, image_size=SIZE, augment=False, texture_bank=bank,
                                     bank_probability=1.0)
    torch.testing.assert_close(with_bank.render_indices([0]).images, without.render_indices([0]).images)


def test_shape_noise_moves_faces_out_of_the_model_smoothly(ict):
    """`shape_noise_mm` adds smooth bumps to each face's shape (the same for the same seed and index, a few mm,
    neighbouring vertices moving alike) and leaves the coefficients as drawn; 0 (the default) renders the model's
    faces."""
    plain = SyntheticFaceGenerator(ict, seed=5, image_size=SIZE, augment=False)
    noisy = SyntheticFaceGenerator(ict, seed=5, image_size=SIZE, augment=False, shape_noise_mm=3.0)
    assert plain.shape_noise_mm == 0.0
    a, b = plain.render_indices([0, 1]), noisy.render_indices([0, 1])
    torch.testing.assert_close(a.coefficients.identity, b.coefficients.identity)
    with torch.no_grad():
        model_shape = ict(a.coefficients.identity, a.coefficients.expression)
    torch.testing.assert_close(a.vertices, model_shape)
    moved_mm = (b.vertices - a.vertices).norm(dim=-1) * 100.0
    assert 0.2 < moved_mm.mean().item() < 6.0 and moved_mm.amax().item() < 30.0
    torch.testing.assert_close(noisy.render_indices([1]).vertices, b.vertices[1:])
    tri = ict.triangles[:, :2]  # an edge of every triangle: its two ends move almost alike
    step = (b.vertices[0] - a.vertices[0])[tri[:, 0]] - (b.vertices[0] - a.vertices[0])[tri[:, 1]]
    assert step.norm(dim=-1).amax().item() * 100.0 < 1.0
