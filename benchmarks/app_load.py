"""Load test of `python app.py` on 127.0.0.1: N concurrent reconstructions through gradio_client, plus the time
from upload to 3D preview (client timing of the /reconstruct endpoint, and optionally in headless Chromium).

    .venv/bin/python benchmarks/app_load.py                       # 20 concurrent requests, fitting
    .venv/bin/python benchmarks/app_load.py --random-weights      # network path timed with random-init weights
    .venv/bin/python benchmarks/app_load.py --browser 3           # + 3 browser uploads (needs chromium)

Bounded: at most 50 requests, 127.0.0.1 only, one overall deadline (--deadline). Every answer is checked: the
GLB path must load in trimesh with a full face mesh. Prints latency min / median / p95 / max and writes
benchmarks/results/app_load.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from test_app_browser import find_browser, free_port, make_driver, start_app, stop_app, wait_http  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
MAX_REQUESTS = 50


def percentiles(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(v.size), "min": float(v.min()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max()), "mean": float(v.mean())}


def check_glb(path: str) -> int:
    import trimesh

    scene = trimesh.load(path, force="scene")
    n = sum(len(g.vertices) for g in scene.geometry.values())
    if n < 10000:
        raise AssertionError(f"{path}: only {n} vertices")
    return n


def one_request(client, photo: Path, method: str, photometric: bool) -> tuple[float, str]:
    from gradio_client import handle_file

    start = time.perf_counter()
    glb, status, _ = client.predict(handle_file(str(photo)), method, True, photometric, api_name="/reconstruct")
    latency = time.perf_counter() - start
    check_glb(glb)
    if "face 1 of" not in status:
        raise AssertionError(f"unexpected status {status!r}")
    return latency, status


def browser_uploads(url: str, photo: Path, count: int, timeout: float) -> list[float]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    found = find_browser()
    if found is None:
        print("browser: chromium/chromedriver not found, skipped")
        return []
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        driver = make_driver(*found, Path(tmp))
        try:
            for _ in range(count):
                driver.get(url)
                wait = WebDriverWait(driver, timeout)
                upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
                start = time.perf_counter()
                upload.send_keys(str(photo))
                wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#viewer canvas")))
                times.append(time.perf_counter() - start)
                print(f"browser: upload -> 3D preview {times[-1]:.2f} s")
        finally:
            driver.quit()
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20, help=f"concurrent requests (at most {MAX_REQUESTS})")
    p.add_argument("--method", default=None, help="method key (default: the app's default)")
    p.add_argument("--no-photometric", action="store_true")
    p.add_argument("--app-concurrency", type=int, default=2, help="the app's --concurrency")
    p.add_argument("--weights", default=None, help="network weights passed to the app")
    p.add_argument("--random-weights", action="store_true",
                   help="time the network path with random-initialised light weights (speed only, not accuracy)")
    p.add_argument("--browser", type=int, default=0, help="also time N uploads in headless Chromium")
    p.add_argument("--deadline", type=float, default=900.0, help="overall time limit, seconds")
    p.add_argument("--out", type=Path, default=RESULTS / "app_load.json")
    args = p.parse_args(argv)
    n = max(1, min(args.requests, MAX_REQUESTS))
    t0 = time.monotonic()

    from gradio_client import Client

    tmp = tempfile.TemporaryDirectory()
    extra = ["--concurrency", str(args.app_concurrency)]
    weights = args.weights
    if args.random_weights:
        from msma.net import MSMANet, NetworkConfig, save_checkpoint

        path = Path(tmp.name) / "random_light.safetensors"
        weights = str(save_checkpoint(MSMANet(NetworkConfig.light()).eval(), path, {"note": "random, timing only"}))
    if weights:
        extra += ["--weights", weights]
    method = args.method or ("network" if weights else "fitting")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(tmp.name) / "app.log"
    # python app.py --host 127.0.0.1 --port N --no-warmup ..., with a private Gradio cache / output folder
    proc = start_app(port, log_path, tuple(extra), temp_dir=Path(tmp.name))
    result: dict = {"url": url, "requests": n, "method": method, "photometric": not args.no_photometric,
                    "app_concurrency": args.app_concurrency, "random_weights": args.random_weights}
    try:
        wait_http(url, proc, timeout=min(180.0, args.deadline))
        result["app_start_s"] = time.monotonic() - t0
        print(f"app up after {result['app_start_s']:.1f} s (log {log_path})")
        # one client (own download folder) per request: identical answers have identical content hashes, and
        # gradio_client stores downloads by hash, so a shared folder would let threads read half-moved files
        clients = [Client(url, verbose=False, download_files=str(Path(tmp.name) / f"dl{i}")) for i in range(n)]
        client = clients[0]
        photos = sorted((REPO / "examples").glob("*.jpg"))
        # warm: one sequential request = client-side upload -> 3D preview (GLB ready) time
        single = [one_request(client, photos[0], method, not args.no_photometric)[0] for _ in range(2)]
        result["sequential_upload_to_glb_s"] = single
        print(f"sequential upload -> GLB (client timing): {', '.join(f'{s:.2f}' for s in single)} s")
        latencies, errors = [], []
        start = time.perf_counter()
        remaining = args.deadline - (time.monotonic() - t0)
        with ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(one_request, clients[i], photos[i % len(photos)], method, not args.no_photometric)
                       for i in range(n)]
            for fut in as_completed(futures, timeout=max(10.0, remaining)):
                try:
                    latencies.append(fut.result()[0])
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    errors.append(f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})")
        result["concurrent_wall_s"] = time.perf_counter() - start
        result["ok"] = len(latencies)
        result["errors"] = errors
        if latencies:
            result["latency_s"] = percentiles(latencies)
            s = result["latency_s"]
            print(f"{n} concurrent requests: {len(latencies)} ok, {len(errors)} failed, wall "
                  f"{result['concurrent_wall_s']:.1f} s; latency min {s['min']:.2f} / median {s['median']:.2f} / "
                  f"p95 {s['p95']:.2f} / max {s['max']:.2f} s")
        for e in errors:
            print("error:", e)
        if args.browser:
            times = browser_uploads(url, photos[0], args.browser, timeout=120)
            if times:
                result["browser_upload_to_3d_preview_s"] = times
                result["browser_median_s"] = statistics.median(times)
    finally:
        stop_app(proc)
        result["app_log_tail"] = log_path.read_text(errors="replace").splitlines()[-15:] if log_path.exists() else []
        tmp.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0 if result.get("ok") == n else 1


if __name__ == "__main__":
    sys.exit(main())
