"""Real-browser test: `python app.py` on 127.0.0.1 driven by headless Chromium (selenium + the system browser).

Chromium and chromedriver come from Debian (`.ci/install_browser.sh`); the test skips cleanly without them.
Artefacts: artifacts/app_browser.png (screenshot) and artifacts/app_browser.json (timings).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
PHOTO = REPO / "examples" / "01_portrait.jpg"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--window-size=1400,1800")

pytestmark = pytest.mark.browser


def find_browser() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) from the system, or None."""
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                  None)
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/lib/chromium/chromedriver",) if
                                                   os.path.exists(p)), None)
    return (binary, driver) if binary and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log_path: Path, extra: tuple[str, ...] = (), temp_dir: Path | None = None,
              warmup: bool = False) -> subprocess.Popen:
    """`python app.py` on 127.0.0.1:port (``--no-warmup`` unless warmup); with temp_dir, Gradio's cache and the app's
    outputs go there."""
    env = dict(os.environ)
    if temp_dir is not None:
        env.update(GRADIO_TEMP_DIR=str(temp_dir / "gradio"), MSMA_APP_OUTPUT=str(temp_dir / "outputs"))
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    flags = () if warmup else ("--no-warmup",)
    return subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), *flags,
                             *extra], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"app did not answer on {url} within {timeout} s")


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def make_driver(binary: str, driver_path: str, download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_upload_preview_overlay_and_glb_download(browser_paths, tmp_path):
    import trimesh
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_app(port, ARTIFACTS / "app_browser_server.log", temp_dir=tmp_path)
    driver = None
    timings: dict[str, float] = {}
    try:
        start = time.monotonic()
        wait_http(url, proc, timeout=60)
        timings["app_start_s"] = time.monotonic() - start
        driver = make_driver(*browser_paths, tmp_path / "downloads")
        driver.set_page_load_timeout(30)
        driver.get(url)
        wait = WebDriverWait(driver, 90)
        upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
        upload_time = time.monotonic()
        upload.send_keys(str(PHOTO))
        # the 3D viewer: a canvas inside the Model3D block once a GLB is loaded
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#viewer canvas")))
        timings["upload_to_3d_preview_s"] = time.monotonic() - upload_time
        overlay = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#overlay img")))
        timings["upload_to_overlay_s"] = time.monotonic() - upload_time
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                              overlay))
        links = wait.until(lambda d: [a.get_attribute("href") for a in
                                      d.find_elements(By.CSS_SELECTOR, "#downloads a")
                                      if (a.get_attribute("href") or "").split("?")[0].endswith(".glb")])
        glb_path = tmp_path / "download.glb"
        with urllib.request.urlopen(links[0], timeout=30) as r:
            glb_path.write_bytes(r.read())
        scene = trimesh.load(glb_path, force="scene")
        vertices = sum(len(g.vertices) for g in scene.geometry.values())
        assert vertices > 10000
        status = driver.find_element(By.CSS_SELECTOR, "#status").text
        assert "face 1 of 1" in status
        # WebGL (swiftshader) must actually draw the face: poll the viewer canvas until it is not blank
        canvas = driver.find_element(By.CSS_SELECTOR, "#viewer canvas")
        spread = 0.0
        for _ in range(30):
            pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"), dtype=float)
            spread = float(pixels.std())
            if spread > 10.0:
                break
            time.sleep(1.0)
        timings["viewer_pixel_std"] = spread
        driver.save_screenshot(str(ARTIFACTS / "app_browser.png"))
        assert spread > 10.0, "the 3D viewer canvas stayed blank"
        timings["glb_vertices"] = vertices

        # bad input: a non-image upload gives a readable error toast, not a stack trace or a frozen spinner
        bogus = tmp_path / "notes.jpg"
        bogus.write_text("not an image")
        driver.get(url)
        upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
        upload.send_keys(str(bogus))

        def error_toast(d):
            texts = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".toast-body, [data-testid=toast-body]")]
            return next((t for t in texts if "cannot be used" in t), False)

        message = WebDriverWait(driver, 30).until(error_toast)
        assert "notes.jpg cannot be used: not a recognised image" in message
        assert "Traceback" not in driver.page_source
        driver.save_screenshot(str(ARTIFACTS / "app_browser_bad_input.png"))
        (ARTIFACTS / "app_browser.json").write_text(json.dumps(timings, indent=2))
    finally:
        if driver is not None:
            try:
                driver.save_screenshot(str(ARTIFACTS / "app_browser_last.png"))
            except Exception:  # noqa: BLE001
                pass
            driver.quit()
        stop_app(proc)
