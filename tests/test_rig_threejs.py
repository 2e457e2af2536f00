"""The rigged, animated GLB loaded by three.js's GLTFLoader in headless Chromium (a real web consumer).

Needs Chromium + chromedriver (`.ci/install_browser.sh`) and three.js from npm (`.ci/install_threejs.sh`, into
$MSMA_THREEJS_DIR or ~/.cache/msma/threejs); skips cleanly without them.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_app_browser import find_browser

from msma.export_rig import Rig, RigAnimation, euler_to_quaternion, export_rigged_glb

THREE = Path(os.environ.get("MSMA_THREEJS_DIR", Path.home() / ".cache" / "msma" / "threejs")) / "node_modules" / "three"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--window-size=640,480")

pytestmark = pytest.mark.browser

# The page around each test's script: three.js from the local npm copy, the GLB loaded, its morph-target mesh
# found as `face`; BODY fills window.RESULT (CANVAS: an optional <canvas>). `args` is filled with %-formatting.
_PAGE_TEMPLATE = """<!doctype html><html><body>CANVAS
<script type="importmap">{"imports": {"three": "./three/build/three.module.js",
                                      "three/addons/": "./three/examples/jsm/"}}</script>
<script type="module">
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
const args = %s;
new GLTFLoader().load('face.glb', (gltf) => {
  let face = null;
  gltf.scene.traverse((o) => { if (!face && o.isMesh && o.morphTargetDictionary) face = o; });
BODY}, undefined, (err) => { window.RESULT = {error: String(err)}; });
</script></body></html>"""


def _gltf_page(body: str, canvas: str = "") -> str:
    return _PAGE_TEMPLATE.replace("CANVAS", canvas).replace("BODY", body)


PAGE = _gltf_page("""\
  const out = {dictionary: Object.keys(face.morphTargetDictionary), defaults: Array.from(face.morphTargetInfluences),
               animations: gltf.animations.map(a => ({name: a.name, tracks: a.tracks.map(t => t.name)})),
               eyes: ['eyeLeft', 'eyeRight'].map(n => !!gltf.scene.getObjectByName(n)), faceName: face.name};
  const pos = face.geometry.attributes.position;
  let best = 0, bestD = Infinity;
  const chin = new THREE.Vector3(...args.chin), v = new THREE.Vector3();
  for (let i = 0; i < pos.count; i++) { v.fromBufferAttribute(pos, i); const d = v.distanceTo(chin);
    if (d < bestD) { bestD = d; best = i; } }
  face.morphTargetInfluences.fill(0);
  const rest = face.getVertexPosition(best, new THREE.Vector3());
  face.morphTargetInfluences[face.morphTargetDictionary['jawOpen']] = 1;
  const open = face.getVertexPosition(best, new THREE.Vector3());
  out.chinMatch = bestD; out.chinMove = [open.x - rest.x, open.y - rest.y, open.z - rest.z];
  // draw it (WebGL through SwiftShader) and count lit pixels
  const renderer = new THREE.WebGLRenderer({canvas: document.getElementById('c'), preserveDrawingBuffer: true});
  const scene = new THREE.Scene(); scene.add(gltf.scene); scene.add(new THREE.AmbientLight(0xffffff, 2));
  const camera = new THREE.PerspectiveCamera(30, 1, 0.01, 10); camera.position.set(0, 0.02, 0.6);
  renderer.render(scene, camera);
  const gl = renderer.getContext(), px = new Uint8Array(256 * 256 * 4);
  gl.readPixels(0, 0, 256, 256, gl.RGBA, gl.UNSIGNED_BYTE, px);
  let lit = 0; for (let i = 0; i < px.length; i += 4) if (px[i] + px[i + 1] + px[i + 2] > 30) lit++;
  out.litFraction = lit / (256 * 256);
  window.RESULT = out;
""", canvas='<canvas id="c" width="256" height="256"></canvas>')


@pytest.fixture(scope="module")
def browser():
    found = find_browser()
    if found is None:
        pytest.skip("chromium + chromedriver not installed (run .ci/install_browser.sh)")
    if not (THREE / "examples" / "jsm" / "loaders" / "GLTFLoader.js").is_file():
        pytest.skip("three.js not installed (run .ci/install_threejs.sh)")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    yield driver
    driver.quit()


def _run_page(browser, folder: Path) -> dict:
    """Serve ``folder`` (index.html, face.glb, three -> three.js) on localhost, open the page, wait for RESULT."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a, **k: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        result = None
        deadline = time.monotonic() + 60
        while result is None and time.monotonic() < deadline:
            result = browser.execute_script("return window.RESULT || null")
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    assert result is not None, "three.js never finished loading the GLB"
    return result


def test_threejs_loads_rig_morphs_and_animation(browser, ict, tmp_path):
    names = ict.expression_names
    weights = np.zeros(len(names))
    weights[names.index("mouthSmile_R")] = 0.4
    texture = np.full((64, 64, 3), (200, 160, 140), np.uint8)
    rig = Rig.from_model(ict, weights=weights, texture=texture)
    t = 10
    anim_weights = np.zeros((t, len(names)))
    anim_weights[:, names.index("jawOpen")] = np.linspace(0, 1, t)
    head = euler_to_quaternion(np.stack([np.zeros(t), np.linspace(0, 0.3, t), np.zeros(t)], 1))
    export_rigged_glb(rig, tmp_path / "face.glb", animation=RigAnimation(np.arange(t) / 30, anim_weights, head))
    (tmp_path / "three").symlink_to(THREE)
    chin_vertex = int(ict.landmarks68[8])
    chin = rig.mesh.vertices[chin_vertex] * 0.1
    (tmp_path / "index.html").write_text(PAGE % json.dumps({"chin": chin.tolist()}))

    result = _run_page(browser, tmp_path)
    assert "error" not in result, result.get("error")
    assert len(result["dictionary"]) == 53 and "jawOpen" in result["dictionary"]
    assert "browInnerUpLeft" in result["dictionary"]
    defaults = dict(zip(result["dictionary"], result["defaults"]))
    assert defaults["mouthSmileRight"] == pytest.approx(0.4, abs=1e-6) and defaults["jawOpen"] == 0
    assert result["eyes"] == [True, True]
    assert result["chinMatch"] < 1e-4
    expected = rig.deltas[names.index("jawOpen"), chin_vertex] * 0.1
    assert result["chinMove"][1] < -0.01  # the chin goes down
    np.testing.assert_allclose(result["chinMove"], expected, atol=2e-4)
    (animation,) = result["animations"]
    assert "face.morphTargetInfluences" in animation["tracks"] and "head.quaternion" in animation["tracks"]
    assert result["litFraction"] > 0.05, "WebGL drew nothing"


PLAYBACK_PAGE = _gltf_page("""\
  const head = gltf.scene.getObjectByName('head'), eye = gltf.scene.getObjectByName('eyeLeft');
  const mixer = new THREE.AnimationMixer(gltf.scene);
  const clip = gltf.animations[0];
  mixer.clipAction(clip).play();
  const samples = [];
  let now = 0;
  for (const t of args.times) {  // advance the mixer as a render loop would, then read the animated state
    mixer.update(t - now); now = t;
    samples.push({influences: Array.from(face.morphTargetInfluences), head: head.quaternion.toArray(),
                  eye: eye ? eye.quaternion.toArray() : null});
  }
  window.RESULT = {duration: clip.duration, names: Object.keys(face.morphTargetDictionary), samples};
""")


def test_tracked_performance_plays_in_threejs(browser, tmp_path):
    """`python -m msma track` on a short clip, then its animated GLB in three.js: after AnimationMixer.update the
    morph influences and head rotation are the tracked per-frame values at the key times and linear in between."""
    from test_track_video import CLI_FAST, make_clip

    from msma.cli import main

    clip = make_clip(tmp_path / "take.mp4", n=10)
    out = tmp_path / "out"
    assert main(["track", str(clip), "-o", str(out), *CLI_FAST, "--format", "glb", "npz"]) == 0
    data = np.load(out / "take_face0.npz")
    times = data["times"] - data["times"][0]
    weights, head = data["weights"], euler_to_quaternion(data["angles"])
    assert np.abs(np.diff(weights, axis=0)).max() > 1e-3  # the tracked weights do change over the clip

    page = tmp_path / "page"
    page.mkdir()
    (page / "face.glb").write_bytes((out / "take_face0.glb").read_bytes())
    (page / "three").symlink_to(THREE)
    mid = (times[:-1] + times[1:]) / 2
    sample_times = np.sort(np.concatenate([times[1:-1], mid]))  # keys and halfway between them, t < duration
    (page / "index.html").write_text(PLAYBACK_PAGE % json.dumps({"times": sample_times.tolist()}))
    result = _run_page(browser, page)
    assert "error" not in result, result.get("error")
    assert result["duration"] == pytest.approx(times[-1], abs=1e-4)
    assert len(result["names"]) == 53

    influences = np.array([s["influences"] for s in result["samples"]])
    expected = np.stack([np.interp(sample_times, times, weights[:, k]) for k in range(weights.shape[1])], 1)
    np.testing.assert_allclose(influences, expected, atol=1e-4)
    assert np.abs(np.diff(influences, axis=0)).max() > 1e-3  # the face really moves during playback
    played_head = np.array([s["head"] for s in result["samples"]])
    at_keys = np.isin(sample_times, times)
    key_index = np.searchsorted(times, sample_times[at_keys])
    dots = np.abs(np.sum(played_head[at_keys] * head[key_index], axis=1))  # q and -q are the same rotation
    assert dots.min() > 1 - 1e-5
    assert result["samples"][0]["eye"] is not None
