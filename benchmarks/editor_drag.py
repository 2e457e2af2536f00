"""Landmark editor in headless Chromium: correcting a pre-labelled face with real drag gestures, and drop precision.

    .venv/bin/python benchmarks/editor_drag.py            # needs chromium + chromedriver (.ci/install_browser.sh)

1. A face from the dlib dev set (``../shared/data/dlib_faces``, human 68-point labels; a synthetic face when that
   folder is absent) is pre-labelled with 14 points moved 6-12 px away from the truth (the other 54 within 0.5 px).
   ``python -m annotate serve`` opens it; each wrong point is corrected with ONE mouse drag (W3C pointer actions:
   press on the point, 4 moves, release on the true position) at the editor's default face view. Per gesture the
   page records when the edit was painted and when the server's answer (saved revision) arrived.
2. At 100 %, 200 % and 400 % zoom (keys 1 / 2 / 4), 6 points are dragged by random whole-pixel offsets; the stored
   position is compared with where the point was dropped (its start + the pointer's displacement / zoom).

Every number is read back from the SQLite store and the page. Writes benchmarks/results/editor_drag.json and .md
(screenshots of the editor go to artifacts/).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "annotate"))
from editor_browser import EditorPage, find_browser, free_port, make_driver, serve, stop_app, wait_http  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ARTIFACTS = REPO / "artifacts"
DLIB = REPO.parent / "shared" / "data" / "dlib_faces"
WRONG = (2, 5, 8, 11, 14, 19, 24, 30, 33, 37, 44, 48, 54, 57)  # spread over every group
TARGET_MS = 150.0


def ground_truth_face() -> tuple[Path, np.ndarray, str]:
    """(photo, (68, 2) true points, description): the largest labelled face of the dlib test set, else synthetic."""
    from annotate.formats import read_dlib_xml

    xml = DLIB / "testing_with_face_landmarks.xml"
    if xml.is_file():
        best = None
        for im in read_dlib_xml(xml):
            for face in im.faces:
                w = np.ptp(face.points[:, 0])
                if np.isfinite(face.points).all() and (best is None or w > best[0]):
                    best = (w, DLIB / im.file, face.points)
        return best[1], best[2], f"dlib testing set {best[1].name}, face {best[0]:.0f} px wide (human labels)"
    sys.path.insert(0, str(REPO / "tests" / "annotate"))
    from annotate_helpers import face_points, write_photo

    photo = write_photo(Path(tempfile.mkdtemp()) / "synthetic.png", 0, size=(400, 320))
    return photo, face_points(0, cx=200, cy=160, size=110), "synthetic noise photo, template face 110 px wide"


def percentiles(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, dtype=np.float64)
    return {"n": int(a.size), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "editor_drag.json")
    args = p.parse_args(argv)
    found = find_browser()
    if found is None:
        print("chromium + chromedriver not found (run .ci/install_browser.sh)")
        return 2
    from annotate.formats import write_pts
    from annotate.importer import import_folder
    from annotate.store import Store

    rng = np.random.default_rng(args.seed)
    photo, truth, source = ground_truth_face()
    pre = truth + rng.uniform(-0.5, 0.5, truth.shape)
    angles = rng.uniform(0, 2 * np.pi, len(WRONG))
    lengths = rng.uniform(6.0, 12.0, len(WRONG))
    pre[list(WRONG)] = truth[list(WRONG)] + np.stack([np.cos(angles), np.sin(angles)], 1) * lengths[:, None]
    off = np.linalg.norm(pre - truth, axis=1)
    assert (off[list(WRONG)] > 5).all() and (np.delete(off, WRONG) < 5).all()

    tmp = Path(tempfile.mkdtemp(prefix="editor_bench_"))
    folder = tmp / "photos"
    folder.mkdir()
    (folder / photo.name).write_bytes(photo.read_bytes())
    write_pts((folder / photo.name).with_suffix(".pts"), pre)
    store = Store(tmp / "project", create=True)
    store.create_project("default")
    report = import_folder(store, folder, user="prelabel")
    assert report.ok and report.faces_imported == 1, report.summary()
    image_id = store.list_images()[0].id

    port = free_port()
    t0 = time.monotonic()
    proc = serve(tmp / "project", port, tmp / "serve.log", "--open-access")
    driver = None
    result: dict = {"source": source, "browser": " ".join(found), "python": platform.python_version(),
                    "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
                    "points_off_gt_5px_before": int((off > 5).sum()), "target_ms": TARGET_MS}
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, timeout=120)
        driver = make_driver(*found, tmp / "downloads")
        driver.get(f"http://127.0.0.1:{port}/")
        page = EditorPage(driver)
        page.wait_ready(timeout=120)
        result["serve_to_editor_ready_s"] = time.monotonic() - t0

        # 1. correct the 14 wrong points, one drag each, at the default (fit face) view
        zoom = page.js("e.view.zoom")
        result["correction_zoom"] = zoom
        gestures = 0
        for i in WRONG:
            here = np.array(page.js("e.points[arguments[0]]", i), dtype=np.float64)
            client = page.client_of(i)
            assert page.js("e.hit(arguments[0], arguments[1], 'mouse')",
                           *page.canvas_xy(page.offset_of(client))) == i, f"point {i} is not the one under the pointer"
            dx, dy = np.round((truth[i] - here) * zoom).astype(int)
            page.drag(client, int(dx), int(dy))
            gestures += 1
            page.wait_saved()
        timings = page.js("e.timings")
        final = store.get_annotation(image_id).points
        err = final - truth
        drags = [t for t in timings if t["kind"] == "drag"]
        result.update(
            gestures=gestures, edits_saved=sum(1 for t in drags if t["ok"]),
            applied_ms=percentiles([t["t_applied"] - t["t_input"] for t in drags]),
            saved_ms=percentiles([t["t_saved"] - t["t_input"] for t in drags]),
            corrected_error_px_max_axis=float(np.abs(err[list(WRONG)]).max()),
            corrected_error_px_max=float(np.linalg.norm(err[list(WRONG)], axis=1).max()),
            pointer_quantisation_px=0.5 / zoom,
            points_off_gt_5px_after=int((np.linalg.norm(err, axis=1) > 5).sum()),
            untouched_points_unchanged=bool(np.array_equal(np.delete(final, WRONG, 0), np.delete(pre, WRONG, 0))),
            revision=store.get_annotation(image_id).revision,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        driver.find_element("css selector", "#ann-editor").screenshot(str(ARTIFACTS / "editor_corrected.png"))

        # 2. drop precision at 100 / 200 / 400 %
        precision = {}
        probe = (36, 39, 42, 45, 51, 62)
        for z in (1, 2, 4):
            page.click(page.client_of(30))
            page.key(str(z))
            assert page.js("e.view.zoom") == z
            drops = []
            for i in probe:
                start = np.array(page.js("e.points[arguments[0]]", i), dtype=np.float64)
                client = page.client_of(i)
                press = np.array(page.js("e.toWorld(arguments[0], arguments[1])",
                                         *page.canvas_xy(page.offset_of(client))))
                dx, dy = (int(v) for v in rng.integers(6, 25, 2) * rng.choice([-1, 1], 2))
                page.drag(client, dx, dy)
                page.wait_saved()
                stored = store.get_annotation(image_id).points[i]
                dropped = start + np.array([dx, dy]) / z  # where the point was let go
                release = press + np.array([dx, dy]) / z  # the photo pixel under the pointer tip at release
                drops.append({"point": i, "dx": dx, "dy": dy, "error_px": float(np.linalg.norm(stored - dropped)),
                              "pointer_tip_error_px": float(np.linalg.norm(stored - release))})
            precision[f"{z}x"] = {"drops": drops, "max_error_px": max(d["error_px"] for d in drops),
                                  "max_pointer_tip_error_px": max(d["pointer_tip_error_px"] for d in drops)}
            driver.find_element("css selector", "#ann-editor").screenshot(str(ARTIFACTS / f"editor_{z}x.png"))
        result["drop_precision"] = precision
        all_timings = page.js("e.timings")
        result["all_edits_saved_ms"] = percentiles([t["t_saved"] - t["t_input"] for t in all_timings])
    finally:
        if driver is not None:
            driver.quit()
        stop_app(proc)
        result["serve_log_tail"] = (tmp / "serve.log").read_text(errors="replace").splitlines()[-5:]
    ok = (result["gestures"] <= 14 and result["points_off_gt_5px_after"] == 0
          and result["saved_ms"]["max"] <= TARGET_MS
          and all(v["max_error_px"] <= 0.5 for v in result["drop_precision"].values()))
    result["meets_targets"] = bool(ok)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {args.out}")
    return 0 if ok else 1


def markdown(r: dict) -> str:
    prec = r["drop_precision"]
    lines = [
        "# Landmark editor: drag correction in headless Chromium (benchmarks/editor_drag.py)",
        "",
        f"Face: {r['source']}. {r['points_off_gt_5px_before']} points pre-labelled more than 5 px off.",
        f"Machine: {r['machine']}; browser {r['browser']}. Editor ready {r['serve_to_editor_ready_s']:.1f} s after "
        "`python -m annotate serve` started.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| drag gestures to correct the face | {r['gestures']} | ≤ 14 |",
        f"| points > 5 px off afterwards | {r['points_off_gt_5px_after']} | 0 |",
        f"| corrected points: max error vs human label | {r['corrected_error_px_max']:.2f} px (per axis "
        f"{r['corrected_error_px_max_axis']:.2f}; pointer steps are {r['pointer_quantisation_px']:.2f} px at "
        f"{r['correction_zoom'] * 100:.0f} % zoom) | |",
        f"| drag → painted (median / max) | {r['applied_ms']['median']:.1f} / {r['applied_ms']['max']:.1f} ms | |",
        f"| drag → saved in the store, answer back (median / p95 / max) | {r['saved_ms']['median']:.0f} / "
        f"{r['saved_ms']['p95']:.0f} / {r['saved_ms']['max']:.0f} ms | ≤ {r['target_ms']:.0f} ms each |",
    ]
    for z, v in prec.items():
        lines.append(f"| drop precision at {z} ({len(v['drops'])} drags): max distance stored ↔ dropped | "
                     f"{v['max_error_px']:.2e} px (to the pointer tip, grab offset included: "
                     f"{v['max_pointer_tip_error_px']:.2f} px) | ≤ 0.5 px |")
    lines += ["", f"All edits (both parts, {r['all_edits_saved_ms']['n']}): saved median "
              f"{r['all_edits_saved_ms']['median']:.0f} ms, max {r['all_edits_saved_ms']['max']:.0f} ms. "
              f"Meets the targets: **{'yes' if r['meets_targets'] else 'no'}**.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
