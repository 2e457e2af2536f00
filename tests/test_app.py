"""The app's handler functions (msma/app/), called directly: no server, no browser."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msma import app as H
from msma.export_rig import arkit_target_name

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PORTRAIT = EXAMPLES / "01_portrait.jpg"
COUPLE = EXAMPLES / "03_couple.jpg"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> H.AppModels:
    """The app as a fresh clone without network weights serves it: fitting only."""
    import msma.api

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(msma.api, "REPO_WEIGHTS_DIR", tmp_path_factory.mktemp("no_weights"))
        for name in (msma.api.WEIGHTS_ENV, msma.api.WEIGHTS_REPO_ENV, H.ABLATION_WEIGHTS_ENV):
            patch.delenv(name, raising=False)
        return H.AppModels.load(weights=None, device="cpu")


@pytest.fixture(scope="module")
def couple(models):
    """One reconstruction shared by several tests (texture on, photometric off for speed)."""
    preview = H.reconstruct(models, str(COUPLE), "fitting", texture=True, photometric=False)
    return preview, H.details(models, preview.session)


def _glb_vertices(path: str) -> np.ndarray:
    import trimesh

    scene = trimesh.load(path, force="scene")
    return np.concatenate([g.vertices for g in scene.geometry.values()])


def _rigged_face(path: str):
    """The ``face`` mesh of a rigged GLB read with pygltflib: (gltf, mesh, {target name: default weight},
    neutral positions in metres, decoder of an accessor)."""
    pygltflib = pytest.importorskip("pygltflib")
    from test_export_rig import read_accessor

    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    mesh = gltf.meshes[next(n.mesh for n in gltf.nodes if n.name == "face")]
    names = mesh.extras["targetNames"]
    assert len(names) == 53 and len(mesh.primitives[0].targets) == 53 and len(mesh.weights) == 53
    positions = read_accessor(gltf, blob, mesh.primitives[0].attributes.POSITION)
    return gltf, mesh, dict(zip(names, mesh.weights)), positions, lambda index: read_accessor(gltf, blob, index)


def _nearest_m(points_m: np.ndarray, vertices_model: np.ndarray) -> np.ndarray:
    """Distance (m) of each GLB point to the nearest model vertex (model units are decimetres)."""
    from scipy.spatial import cKDTree

    return cKDTree(vertices_model * 0.1).query(points_m)[0]


# --------------------------------------------------------------------------------------------- examples
def test_examples_are_small_and_licensed():
    photos = sorted(EXAMPLES.glob("*.jpg"))
    assert 3 <= len(photos) <= 6
    for path in photos:
        assert path.stat().st_size < 100_000, path
        with Image.open(path) as im:
            assert max(im.size) <= 640, path
    assert (EXAMPLES / "LICENSE-deepface-tests.txt").is_file()
    assert H.example_photos() == [str(p) for p in photos]


# --------------------------------------------------------------------------------------------- bad input
def test_load_photo_none_and_non_image(tmp_path):
    with pytest.raises(H.AppError, match="upload a photo"):
        H.load_photo(None)
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not an image")
    with pytest.raises(H.AppError, match="notes.txt cannot be used: not a recognised image"):
        H.load_photo(str(bogus))
    # uploads checked by client_upload carry the original file name
    with pytest.raises(H.AppError, match="^holiday.jpg cannot be used"):
        H.load_photo(H.client_upload({"path": str(bogus), "orig_name": "holiday.jpg"}, roots=[tmp_path]))


def test_load_photo_tiny_and_corrupt(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (10, 10)).save(tiny)
    with pytest.raises(H.AppError, match="at least 32 px"):
        H.load_photo(str(tiny))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(PORTRAIT.read_bytes()[:300])
    with pytest.raises(H.AppError, match="broken.jpg cannot be used"):
        H.load_photo(str(broken))


def test_gif_first_frame_with_warning(tmp_path):
    frames = [Image.open(PORTRAIT).convert("RGB"), Image.new("RGB", Image.open(PORTRAIT).size, "red")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    photo = H.load_photo(str(gif))
    assert photo.image.shape[:2] == frames[0].size[::-1]
    assert any("first frame" in w for w in photo.warnings)
    single = tmp_path / "still.gif"
    frames[0].save(single)
    assert any("GIF" in w for w in H.load_photo(str(single)).warnings)


def test_huge_image_is_downscaled_and_no_face_is_readable(models, tmp_path):
    big = tmp_path / "huge.png"
    Image.new("L", (12000, 12000), 128).save(big, compress_level=1)
    photo = H.load_photo(str(big), max_side=models.max_side)
    assert max(photo.image.shape[:2]) == models.max_side
    assert any("12000×12000" in w and "downscaled" in w for w in photo.warnings)
    with pytest.raises(H.AppError, match=r"No face found in huge.png \(12000×12000 px, analysed at 2048×2048\)"):
        H.reconstruct(models, str(big), "fitting")


def test_unknown_method_is_readable(models):
    with pytest.raises(H.AppError, match="not available"):
        H.reconstruct(models, str(PORTRAIT), "no-such-method")


def test_handlers_need_a_session(models):
    for call in (lambda: H.select_face(models, None, 0), lambda: H.repose(models, None, [0] * 8, [0] * 5),
                 lambda: H.slider_values(None)):
        with pytest.raises(H.AppError, match="first"):
            call()
    assert H.details(models, None) is None


# --------------------------------------------------------------------------------------------- reconstruct tab
def test_models_describe_fitting_only(models):
    info = models.describe()
    assert models.default == "fitting" and [k for _, k in models.choices()] == ["fitting"]
    for key in ("face_model", "weights", "detector", "device"):
        assert info[key]
    assert "none" in info["weights"]


def test_reconstruct_preview_and_details(models, couple):
    preview, details = couple
    session = preview.session
    assert len(session.detections) == 2 and session.selected == 0
    assert "face 1 of 2" in preview.status
    assert Path(preview.glb).name == f"{Path(session.name).stem}_face1.glb"  # the viewer's download is named
    # the viewer shows the rigged face: neutral mesh + 53 ARKit targets, the fitted weights as the default pose
    gltf, _, weights, positions, _ = _rigged_face(preview.glb)
    fitted = {arkit_target_name(k): v for k, v in session.face.blendshapes.items()}
    assert weights == pytest.approx(fitted, abs=1e-6)
    assert _nearest_m(positions, session.face.neutral_vertices).max() < 1e-6
    assert gltf.images and {"eyeLeft", "eyeRight"} <= {n.name for n in gltf.nodes}
    verts = _glb_vertices(preview.glb)
    assert len(verts) >= session.face.vertices.shape[0]
    extent = verts.max(0) - verts.min(0)
    assert 0.1 < extent.max() < 0.6  # metres: a head
    h, w = session.photo.shape[:2]
    assert details.overlay.shape == (h, w, 3) and details.overlay.dtype == np.uint8
    assert not np.array_equal(details.overlay, session.photo)
    assert details.shape.ndim == 3 and details.shape.dtype == np.uint8 and details.shape.std() > 5
    bars = details.blendshape_plot.data[0]
    assert len(bars.x) == 53 and all(0.0 <= v <= 1.0 for v in bars.y)
    assert set(details.pose) == {"pitch", "yaw", "roll"} and "yaw" in details.pose_markdown
    assert len(details.gallery) == 2 and "largest" in details.gallery[0][1]
    assert len(details.expression_values) == len(H.KEY_EXPRESSIONS)
    assert len(details.identity_values) == H.N_IDENTITY_SLIDERS


def test_downloads(couple):
    preview, details = couple
    face = preview.session.face
    files = {Path(p).name: Path(p) for p in details.downloads}
    assert len(files) == 5
    zipped = next(p for n, p in files.items() if n.endswith("_obj.zip"))
    names = zipfile.ZipFile(zipped).namelist()
    assert {Path(n).suffix for n in names} >= {".obj", ".mtl", ".png"}
    payload = json.loads(next(p for n, p in files.items() if n.endswith(".json")).read_text())
    assert payload
    assert any(n.endswith(".ply") for n in files)
    glbs = [p for n, p in files.items() if n.endswith(".glb")]
    assert [p.name.endswith("_static.glb") for p in glbs] == [False, True]  # rigged first, then the static one
    _, _, weights, _, _ = _rigged_face(str(glbs[0]))
    assert weights == pytest.approx({arkit_target_name(k): v for k, v in face.blendshapes.items()}, abs=1e-6)
    static = _glb_vertices(str(glbs[1]))
    assert len(static) > 10000
    assert _nearest_m(static, face.vertices).max() < 1e-6  # the posed face, no morph targets


def test_select_face_caches_and_validates(models, couple):
    preview, _ = couple
    session = preview.session
    second = H.select_face(models, session, 1)
    assert second.session is session and session.selected == 1 and set(session.faces) == {0, 1}
    assert "face 2 of 2" in second.status
    assert not np.allclose(session.faces[0].vertices, session.faces[1].vertices)
    with pytest.raises(H.AppError, match="no face #5"):
        H.select_face(models, session, 4)
    assert H.details(models, session).gallery[1][1].endswith("✓")
    H.select_face(models, session, 0)


def test_repose_drives_the_rigged_face(models, couple):
    preview, _ = couple
    session = preview.session
    face = session.face
    before = face.vertices.copy()
    values = H.slider_values(session)
    n = len(H.KEY_EXPRESSIONS)
    identity = face.coefficients.identity[0, : H.N_IDENTITY_SLIDERS].tolist()  # unrounded: the fit's own neutral
    sliders = dict(zip(H.KEY_EXPRESSIONS, values[:n]))
    sliders.update(jawOpen=1.0, smile=0.25, eyeBlink=1.7)  # out of range: clipped to 1
    edited = H.repose(models, session, list(sliders.values()), identity)
    gltf, mesh, weights, positions, decode = _rigged_face(edited.glb)
    # default morph weights = the sliders, and the fit's weights for every blendshape no slider drives
    driven = {}
    for key, names in H.KEY_EXPRESSIONS.items():
        driven.update({arkit_target_name(name): min(sliders[key], 1.0) for name in names})
    assert driven["jawOpen"] == 1.0 and driven["mouthSmileLeft"] == 0.25 and driven["eyeBlinkRight"] == 1.0
    fitted = {arkit_target_name(k): v for k, v in face.blendshapes.items()}
    assert weights == pytest.approx({**fitted, **driven}, abs=1e-6)
    assert edited.weights["mouthSmile_R"] == 0.25
    # identity sliders at the fit's values: the GLB's base mesh is the person's neutral face; texture and eyes kept
    assert _nearest_m(positions, face.neutral_vertices).max() < 1e-6
    assert gltf.images and {"eyeLeft", "eyeRight"} <= {n.name for n in gltf.nodes}
    names = mesh.extras["targetNames"]
    jaw = decode(mesh.primitives[0].targets[names.index("jawOpen")]["POSITION"])
    assert jaw[:, 1].min() < -0.01  # the jawOpen target moves the chin down by centimetres

    # the downloads follow the sliders: rigged GLB with the same weights, static GLB posed with them
    files = {Path(p).name: p for p in edited.downloads}
    assert len(files) == 5 and all("_edited" in name for name in files)
    rigged = next(p for name, p in files.items() if name.endswith("_edited.glb"))
    assert _rigged_face(rigged)[2] == pytest.approx(weights, abs=1e-6)
    static = _glb_vertices(next(p for name, p in files.items() if name.endswith("_static.glb")))
    reconstructor = models.engine(session.options.method).reconstructor
    posed = reconstructor.repose(face, expression=edited.weights, identity=dict(enumerate(identity)))
    assert _nearest_m(static, posed).max() < 1e-5
    assert _nearest_m(static, face.vertices).max() > 0.005  # the jaw opened by millimetres (GLB in metres)

    # identity sliders rebuild the neutral mesh the targets sit on
    ident = [v + 2.0 for v in identity]
    other = H.repose(models, session, values[:n], ident)
    _, _, other_weights, other_positions, _ = _rigged_face(other.glb)
    unedited = {arkit_target_name(name): value for value, names in zip(values[:n], H.KEY_EXPRESSIONS.values())
                for name in names}
    assert other_weights == pytest.approx({**fitted, **unedited}, abs=1e-6)
    zero = dict.fromkeys(face.blendshapes, 0.0)
    neutral = reconstructor.repose(face, expression=zero, identity=dict(enumerate(ident)))
    assert _nearest_m(other_positions, neutral).max() < 1e-6
    assert _nearest_m(other_positions, face.neutral_vertices).max() > 0.001
    np.testing.assert_array_equal(face.vertices, before)  # the reconstruction itself is untouched
    # the viewer-only step writes no downloads; "reset" hands back the reconstruction's own files
    assert H.repose(models, session, values[:n], identity, downloads=False).downloads == []
    original = H.reconstruction_downloads(session)
    assert len(original) == 5 and not any("_edited" in p for p in original)
    assert _rigged_face(next(p for p in original if p.endswith("1.glb")))[2] == pytest.approx(fitted, abs=1e-6)


def test_sessions_do_not_share_state(models, couple):
    preview, _ = couple
    other = H.reconstruct(models, str(PORTRAIT), "fitting", texture=False, photometric=False)
    assert other.session is not preview.session
    assert other.session.workdir != preview.session.workdir
    assert len(other.session.detections) == 1 and len(preview.session.detections) == 2
    assert not hasattr(models, "session") and not hasattr(models, "sessions")
    # a new photo in the same browser session reuses its folder but never overwrites a file already handed out
    again = H.reconstruct(models, str(PORTRAIT), "fitting", texture=False, photometric=False, session=other.session)
    assert again.session.workdir == other.session.workdir and again.glb != other.glb
    assert len(_glb_vertices(other.glb)) == len(_glb_vertices(again.glb))


def test_no_face(models, tmp_path):
    blank = tmp_path / "wall.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((240, 320, 3)) * 60 + 100).astype(np.uint8)).save(blank)
    with pytest.raises(H.AppError, match="No face found in wall.jpg"):
        H.reconstruct(models, str(blank), "fitting")


# --------------------------------------------------------------------------------------------- compare tab
def test_compare_identities(models):
    res = H.compare_identities(models, str(PORTRAIT), str(EXAMPLES / "02_portrait.jpg"), "fitting")
    assert set(res.distance) == {"mean_mm", "median_mm", "rms_mm", "max_mm"}
    assert 0.0 < res.distance["mean_mm"] < 50.0
    assert "mm" in res.summary
    mesh = res.heatmap.data[0]
    assert mesh.type == "mesh3d" and "mm" in mesh.colorbar.title.text
    for glb in (res.glb_a, res.glb_b):
        assert len(_glb_vertices(glb)) > 10000


@pytest.fixture(scope="module")
def network_models(tmp_path_factory):
    """Random-initialised light network weights: enough to check the app offers and runs the network methods."""
    from msma.net import MSMANet, NetworkConfig, save_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    msma = save_checkpoint(MSMANet(NetworkConfig(width=0.25)).eval(), folder / "msma.safetensors")
    plain = save_checkpoint(MSMANet(NetworkConfig(width=0.25, fusion=False, attention=False)).eval(),
                            folder / "plain.safetensors")
    return H.AppModels.load(weights=msma, ablation_weights=plain, device="cpu")


def test_network_methods_offered_and_compared(network_models):
    keys = [k for _, k in network_models.choices()]
    assert keys == ["network", "network+refine", "fitting", "ablation"]
    from msma.api import DEFAULT_METHOD

    assert network_models.default == DEFAULT_METHOD  # the app offers msma.api's one default
    assert "ablation_weights" in network_models.describe()
    res = H.compare_methods(network_models, str(PORTRAIT), "network", "ablation", photometric=False)
    assert res.overlay_a.shape == res.overlay_b.shape
    assert "MSMA network" in res.summary and "plain ResNet" in res.summary
    assert len(_glb_vertices(res.glb_a)) > 10000 and len(_glb_vertices(res.glb_b)) > 10000
    preview = H.reconstruct(network_models, str(PORTRAIT), "network")
    assert preview.session.face.method == "network"


# --------------------------------------------------------------------------------------------- hosting
def test_gpu_decorator(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    deco, info = H.gpu_decorator()

    def f():
        return 1

    assert deco(f) is f and "none" in info
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails
    deco, info = H.gpu_decorator()
    assert deco(f) is f and "missing" in info
    calls = {}

    def fake_gpu(duration=60):
        calls["duration"] = duration
        return lambda fn: ("wrapped", fn)

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))
    deco, info = H.gpu_decorator(duration=30)
    assert deco(f) == ("wrapped", f) and calls["duration"] == 30 and "ZeroGPU" in info


def test_prune_outputs(tmp_path):
    import os
    import time

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    past = time.time() - 10_000
    os.utime(old, (past, past))
    assert H.prune_outputs(tmp_path, max_age_s=3600) == 1
    assert not old.exists() and new.exists()


def test_app_help_documents_options():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for option in ("--host", "--port", "--share", "--auth", "--weights", "--concurrency", "--max-file-size"):
        assert option in out.stdout


def test_build_demo_and_ui_errors(models):
    import gradio as gr

    import app

    args = app.parse_args(["--annotate-dir", str(REPO / "does-not-exist")])
    demo = app.build_demo(models, args)
    assert isinstance(demo, gr.Blocks)
    config = demo.get_config_file()
    types_ = {c["type"] for c in config["components"]}
    assert {"model3d", "imageslider", "plot", "gallery", "file", "slider", "state"} <= types_
    tabs = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {"Reconstruct", "Compare", "Annotate", "About"} <= tabs
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"reconstruct", "compare_methods", "compare_identities"} <= api_names

    @app.ui
    def bad():
        raise H.AppError("readable message")

    with pytest.raises(gr.Error, match="readable message") as info:
        bad()
    assert info.value.duration == app.TOAST_S <= 10  # closes by itself

    @app.ui
    def crash():
        raise RuntimeError("internal detail")

    with pytest.raises(gr.Error) as info:
        crash()
    assert "internal detail" not in str(info.value) and "RuntimeError" in str(info.value)
    assert info.value.duration == app.TOAST_S
    assert app.auth_pairs(app.parse_args(["--auth", "a:password", "--auth", "c:pass:word"])) == [
        ("a", "password"), ("c", "pass:word")]
    with pytest.raises(SystemExit, match="shorter than 8"):
        app.auth_pairs(app.parse_args(["--auth", "a:short"]))
