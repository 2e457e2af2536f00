from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from msma import NoFaceError, Reconstructor
from msma.fit import PhotometricSettings
from msma.image_io import ImageLoadError


@pytest.fixture(scope="module")
def reconstructor() -> Reconstructor:
    return Reconstructor(method="fitting", photometric_settings=PhotometricSettings(iterations=5), texture_size=256)


@pytest.fixture(scope="module")
def portrait(shared_data: Path) -> Path:
    return shared_data / "faces_in_the_wild" / "img12.jpg"


@pytest.fixture(scope="module")
def result(reconstructor: Reconstructor, portrait: Path):
    return reconstructor(portrait)


def test_reconstructs_a_real_portrait(result, reconstructor: Reconstructor) -> None:
    assert len(result) >= 1
    face = result[0]
    n = reconstructor.model.n_vertices
    assert face.vertices.shape == (n, 3) and face.projected.shape == (n, 3)
    assert face.landmark_error_px < 0.05 * float(np.linalg.norm(face.box[2:] - face.box[:2]))
    assert set(face.blendshapes) == set(reconstructor.model.expression_names)
    assert all(0.0 <= w <= 1.0 for w in face.blendshapes.values())
    assert abs(face.pose.yaw) < 45
    assert face.texture is not None and face.texture.shape == (256, 256, 3)
    h, w = result.image.shape[:2]
    inside = (face.projected[:, 0] > 0) & (face.projected[:, 0] < w) & (face.projected[:, 1] > 0)
    assert inside.mean() > 0.8


def test_overlay_and_exports(result, tmp_path: Path) -> None:
    overlay = result.overlay()
    assert overlay.shape == result.image.shape and overlay.dtype == np.uint8
    assert np.abs(overlay.astype(int) - result.image.astype(int)).mean() > 1.0
    files = result[0].export(tmp_path, stem="portrait", formats=("glb", "obj", "ply", "json"))
    assert trimesh.load(files["glb"], force="mesh").vertices.shape[0] > 1000
    assert files["obj"].is_file() and files["json"].is_file() and files["ply"].is_file()
    # the default GLB is the rig: 53 ARKit-named morph targets, posed at the fitted weights
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(files["glb"]))
    face_mesh = gltf.meshes[next(n.mesh for n in gltf.nodes if n.name == "face")]
    assert len(face_mesh.primitives[0].targets) == 53 and "jawOpen" in face_mesh.extras["targetNames"]
    assert np.allclose(face_mesh.weights, list(result[0].blendshapes.values()), atol=1e-6)
    rig = result[0].rig()
    np.testing.assert_allclose(rig.posed_vertices(), result[0].vertices, atol=1e-4)
    static = result[0].export(tmp_path, stem="static", formats=("glb",), rigged=False)["glb"]
    assert not pygltflib.GLTF2().load(str(static)).meshes[0].primitives[0].targets


def test_repose_changes_only_requested_expression(result, reconstructor: Reconstructor) -> None:
    face = result[0]
    same = reconstructor.repose(face)
    np.testing.assert_allclose(same, face.vertices, atol=1e-5)
    opened = reconstructor.repose(face, expression={"jawOpen": 1.0})
    chin = int(reconstructor.model.landmarks68[8])
    assert opened[chin, 1] < face.vertices[chin, 1] - 0.03


def test_no_face_raises_clear_error(reconstructor: Reconstructor) -> None:
    blank = np.full((256, 256, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        reconstructor(blank)


def test_bad_files_raise_image_load_error(reconstructor: Reconstructor, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError):
        reconstructor(text)
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, format="PNG")
    with pytest.raises(ImageLoadError):
        reconstructor(tiny.getvalue())


def test_several_faces_largest_first(reconstructor: Reconstructor, shared_data: Path) -> None:
    result = reconstructor(shared_data / "faces_in_the_wild" / "couple.jpg", texture=False)
    assert len(result) >= 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in result]
    assert areas == sorted(areas, reverse=True)
    only = reconstructor(shared_data / "faces_in_the_wild" / "couple.jpg", largest_only=True, texture=False)
    assert len(only) == 1


def test_network_method_needs_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        Reconstructor(method="network", weights=tmp_path / "missing.safetensors")


def test_bundled_network_weights_reconstruct(portrait: Path, result) -> None:
    from msma.api import REPO_WEIGHTS_DIR

    if not (REPO_WEIGHTS_DIR / "msma_light.safetensors").is_file():
        pytest.skip("no trained weights in weights/")
    network = Reconstructor(method="network", texture_size=256)
    assert network.method == "network" and "msma_light" in network.describe()["weights"]
    face = network(portrait, texture=False)[0]
    assert face.method == "network"
    # The network's pose agrees with the fitted one within a few degrees on a near-frontal portrait.
    assert abs(face.pose.yaw - result[0].pose.yaw) < 15 and abs(face.pose.roll - result[0].pose.roll) < 10
    from msma.api import DEFAULT_METHOD

    auto = Reconstructor()
    assert auto.method == DEFAULT_METHOD == "fitting"  # the most accurate measured (benchmarks/sfm_3d.py)
    assert auto.network is not None  # weights still load for the app's other methods


def test_network_flip_test_averages_the_mirrored_answer(portrait: Path) -> None:
    """flip_test: the network's coefficients are the mean of its answer for the crop and the mirror of its answer
    for the flipped crop (raw outputs, before the trust scaling)."""
    from msma.api import REPO_WEIGHTS_DIR
    from msma.mirror import CoefficientMirror

    if not (REPO_WEIGHTS_DIR / "msma_light.safetensors").is_file():
        pytest.skip("no trained weights in weights/")
    plain = Reconstructor(method="network")
    flipped = Reconstructor(method="network", face_model=plain.model, flip_test=True)
    crop = plain.estimate_many([portrait]).__next__().faces[0].alignment.image[None]
    mirror = CoefficientMirror.for_model(plain.model)
    expected = mirror.average(plain.predict(crop, raw=True), plain.predict(crop[:, :, ::-1].copy(), raw=True))
    got = flipped.predict(crop, raw=True)
    assert torch.allclose(got.identity, expected.identity, atol=1e-4)
    assert torch.allclose(got.expression, expected.expression, atol=1e-4)
    assert not torch.allclose(got.identity, plain.predict(crop, raw=True).identity, atol=1e-3)


def test_overlay_shades_the_face_not_the_neck(result) -> None:
    """The overlay's shaded mesh is the narrow face region: nothing well below the chin (no grey neck slab)."""
    from msma.api import _shaded_render

    face = result[0]
    _, mask = _shaded_render(face, result.image.shape[:2])
    chin_y = face.fitted_landmarks[8, 1]
    face_height = chin_y - face.fitted_landmarks[19, 1]
    assert mask[int(chin_y + 0.25 * face_height):].sum() == 0
    assert mask[int(face.fitted_landmarks[30, 1]), int(face.fitted_landmarks[30, 0])] > 0.5  # the nose is drawn
