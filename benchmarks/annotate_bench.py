"""Annotation toolkit numbers: import speed (with / without pre-labels), save latency, round-trip exactness.

    .venv/bin/python benchmarks/annotate_bench.py --n 1000 --prelabel detector --prelabel-sample 100

* import: ``--n`` photos generated from the dev photos (rescaled 0.6-1.4x, mirrored, brightness-shifted, so every
  file is unique and pre-labelling does real detection work) imported into a fresh project.
* pre-label: the same import with ``msma.landmarks`` detection on ``--prelabel-sample`` of them (0 = all), with
  the per-image time extrapolated to ``--n`` when sampled.
* save latency: ``--saves`` single-point corrections through ``Store.save`` and through the UI handler
  (``Annotator.move``: validation + save), median and p95.
* round trip: the dlib dev set imported, exported to each format, re-imported; max |coordinate difference|.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotate.exporter import export_project  # noqa: E402
from annotate.importer import import_folder, import_source  # noqa: E402
from annotate.labeling import Annotator  # noqa: E402
from annotate.store import Store  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def generate(out: Path, n: int) -> list[Path]:
    sources = sorted((DATA / "dlib_faces").glob("*.jpg")) + sorted((DATA / "faces_in_the_wild").glob("*.jpg"))
    if not sources:
        raise SystemExit(f"no dev photos under {DATA}")
    originals = [Image.open(p).convert("RGB") for p in sources]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        im = originals[i % len(originals)]
        k = i // len(originals)
        scale = 0.6 + 0.8 * ((k * 0.618) % 1.0)
        im = im.resize((max(64, int(im.width * scale)), max(64, int(im.height * scale))), Image.BILINEAR)
        if k % 2:
            im = ImageOps.mirror(im)
        im = ImageEnhance.Brightness(im).enhance(0.8 + 0.4 * ((k * 0.37) % 1.0))
        path = out / f"{i:05d}.jpg"
        im.save(path, quality=90)
        paths.append(path)
    return paths


def fresh_store(root: Path) -> Store:
    s = Store(root, create=True)
    s.create_project("default")
    return s


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_import(tmp: Path, n: int) -> dict:
    t0 = time.perf_counter()
    generate(tmp / "photos", n)
    gen = time.perf_counter() - t0
    store = fresh_store(tmp / "import_plain")
    report = import_folder(store, tmp / "photos", progress=True)
    assert len(report.added) == n, report.summary()
    return {"n": n, "generate_s": round(gen, 2), "import_s": round(report.seconds, 2),
            "import_ms_per_image": round(1000 * report.seconds / n, 2)}


def bench_prelabel(tmp: Path, n: int, sample: int, detector: str) -> dict:
    photos = sorted((tmp / "photos").glob("*.jpg"))
    k = len(photos) if sample <= 0 else min(sample, len(photos))
    subset = tmp / "photos_sample"
    subset.mkdir(exist_ok=True)
    for p in photos[:: max(1, len(photos) // k)][:k]:
        (subset / p.name).write_bytes(p.read_bytes())
    from annotate.prelabel import DetectorPrelabeller

    pre = DetectorPrelabeller(detector)
    from msma.image_io import load_image

    pre(load_image(photos[0]))  # model loading is a one-off cost, reported separately
    store = fresh_store(tmp / "import_prelabel")
    report = import_folder(store, subset, prelabeller=pre, progress=True)
    per_image = report.seconds / k
    no_face = sum(1 for r in store.list_images() if not store.get_annotations(r.id))
    return {"detector": detector, "sample": k, "sample_import_s": round(report.seconds, 2),
            "prelabel_s": round(report.prelabel_seconds, 2), "ms_per_image": round(1000 * per_image, 1),
            "faces": report.faces_prelabelled, "images_without_face": no_face,
            f"estimated_import_s_for_{n}": round(per_image * n, 1), "extrapolated": k < n}


def bench_save(tmp: Path, saves: int) -> dict:
    store = fresh_store(tmp / "save")
    r = import_folder(store, DATA / "dlib_faces")
    assert r.ok, r.summary()
    img = store.list_images(order="id")[0]
    ann = store.get_annotation(img.id)
    pts, rev = ann.points.copy(), ann.revision
    raw = []
    for i in range(saves):
        pts[30, 0] = 200 + (i % 5)
        t = time.perf_counter()
        rev = store.save(img.id, pts, ann.visibility, base_revision=rev, user="bench").revision
        raw.append(1000 * (time.perf_counter() - t))
    ui = Annotator(store)
    st = ui.new_state()
    ui.open_image(st, img.id, 0)
    ui.render(st)
    handler, render = [], []
    for i in range(saves):
        t = time.perf_counter()
        msg = ui.move(st, 30, 200.0 + (i % 5) + 0.5, 110.0, "bench")
        handler.append(1000 * (time.perf_counter() - t))
        assert "saved" in msg, msg
        t = time.perf_counter()
        ui.render(st)
        render.append(1000 * (time.perf_counter() - t))
    return {"saves": saves, "store_save_ms_median": round(statistics.median(raw), 2),
            "store_save_ms_p95": round(pct(raw, 95), 2),
            "ui_move_and_save_ms_median": round(statistics.median(handler), 2),
            "ui_move_and_save_ms_p95": round(pct(handler, 95), 2),
            "render_ms_median": round(statistics.median(render), 2), "render_ms_p95": round(pct(render, 95), 2),
            "history_rows": len(store.history(img.id, 0))}


def bench_roundtrip(tmp: Path) -> dict:
    src = fresh_store(tmp / "rt_src")
    r = import_folder(src, DATA / "dlib_faces")
    assert r.ok, r.summary()

    def dump(s: Store) -> dict:
        return {(im.sha256, a.face): a for im in s.list_images() for a in s.get_annotations(im.id)}

    a = dump(src)
    out = {"faces": len(a)}
    for fmt in ("dlib", "coco", "pts", "hf"):
        export_project(src, tmp / f"rt_{fmt}", fmt)
        dst = fresh_store(tmp / f"rt_dst_{fmt}")
        import_source(dst, tmp / f"rt_{fmt}")
        b = dump(dst)
        assert a.keys() == b.keys(), fmt
        diff = max(float(np.nanmax(np.abs(a[k].points - b[k].points))) for k in a)
        vis_same = all(np.array_equal(a[k].visibility, b[k].visibility) for k in a)
        out[fmt] = {"max_abs_coord_diff": diff, "visibility_identical": vis_same}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--prelabel", choices=("detector", "none"), default="detector")
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--prelabel-sample", type=int, default=100, help="pre-label this many and extrapolate (0 = all)")
    ap.add_argument("--saves", type=int, default=200)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="annotate_bench_") as tmp_str:
        tmp = Path(tmp_str)
        results["import"] = bench_import(tmp, args.n)
        if args.prelabel == "detector":
            results["prelabel"] = bench_prelabel(tmp, args.n, args.prelabel_sample, args.detector)
        results["save_latency"] = bench_save(tmp, args.saves)
        results["roundtrip_dlib_set"] = bench_roundtrip(tmp)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
