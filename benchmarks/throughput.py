"""Photo-collection throughput (msma.collection): photos/s of the network path with 1 and 2 workers, and of the
default method (fitting), end to end (decode + detect + align + estimate + write the row's shard).

    nice -n 10 .venv/bin/python benchmarks/throughput.py [--photos 50] [--repeat 4] [--quick]
        [--out benchmarks/results --name throughput]

Photo set: the 50 photos of ../shared/data/faces_in_the_wild (examples/ when that folder is absent), as they are
("original", up to 2280 px) and downscaled to at most 250 px a side ("250px", the size of face datasets such as
LFW), each listed ``--repeat`` times (the original-size and fitting sets: once by default) under different ids, so
that a run lasts long enough to measure (nothing is cached between photos). Every configuration is a fresh process
running `run_collection` into an empty folder, 1 thread per worker.

Then the resume check (``--kills``, default 5): the CLI job SIGKILLed at a random moment of its processing (0-8 s
after that run wrote its first shard) five times, then finished, and the final table checked for every photo exactly
once.

Reported per configuration: ``wall`` photos/s (the whole run, including starting the workers and loading their
models) and ``steady`` photos/s (from the moment every worker has written its first shard to the last shard, from
the shards' timestamps: model loading excluded). The 1-minute load average before and after each run is recorded:
this 2-core machine is shared, and a load above 2 means other processes took part of the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from msma.collection import CollectionSettings, open_source, run_collection  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "faces_in_the_wild"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def prepare_photos(folder: Path, count: int, repeat: int, max_side: int | None) -> tuple[int, str]:
    """Copies of the photo set in ``folder`` (downscaled to ``max_side`` when given); returns (photos, description)."""
    source = SHARED if SHARED.is_dir() else REPO / "examples"
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    folder.mkdir(parents=True)
    for path in files:
        for r in range(repeat):
            target = folder / f"{path.stem}_r{r}{path.suffix.lower()}"
            if max_side is None:
                shutil.copyfile(path, target)
            else:
                image = Image.open(path)
                image.load()
                image = image.convert("RGB")
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                image.save(target.with_suffix(".jpg"), quality=92)
    size = "original size" if max_side is None else f"downscaled to <= {max_side} px"
    return len(files) * repeat, f"{len(files)} photos of {source.relative_to(REPO.parent)} ({size}) x {repeat}"


def _steady(shards: Path, workers: int) -> float | None:
    """Photos/s once every worker has written its first shard (shard names: part-<time_ns>-<pid>-<id>.parquet)."""
    import pyarrow.parquet as pq

    entries = []
    for shard in shards.glob("part-*.parquet"):
        _, stamp, pid, _ = shard.stem.split("-")
        photos = len(set(pq.read_table(shard, columns=["photo_id"]).column("photo_id").to_pylist()))
        entries.append((int(stamp) / 1e9, pid, photos))
    entries.sort()
    first_of: dict[str, float] = {}
    for stamp, pid, _ in entries:
        first_of.setdefault(pid, stamp)
    if len(first_of) < workers:
        return None
    start = max(first_of.values())
    after = [(stamp, photos) for stamp, _, photos in entries if stamp > start]
    if len(after) < 2:
        return None
    return sum(photos for _, photos in after) / (after[-1][0] - start)


def _run_one(spec: str) -> None:
    """Child process: one configuration, timed from before the models load; prints the report as JSON."""
    job = json.loads(spec)
    start = time.perf_counter()
    report = run_collection(open_source(job["photos"]), job["out"], CollectionSettings(**job["settings"]),
                            progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start, "faces": report.faces, "failed": report.failed}))


def run_config(name: str, photos: Path, n_photos: int, settings: CollectionSettings, work: Path) -> dict:
    """One configuration in a fresh process (so every run loads its models, as a real job does)."""
    import subprocess

    out = work / f"out-{name}"
    load_before = _load()
    spec = json.dumps({"photos": str(photos), "out": str(out), "settings": settings.__dict__})
    done = subprocess.run([sys.executable, __file__, "--run-one", spec], check=True, capture_output=True, text=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    wall = child["seconds"]
    result = {
        "config": name, "method": settings.method, "detector": settings.detector, "workers": settings.workers,
        "threads_per_worker": settings.threads_per_worker, "batch_size": settings.batch_size, "photos": n_photos,
        "faces": child["faces"], "failed_photos": child["failed"], "seconds": round(wall, 2),
        "wall_photos_per_s": round(n_photos / wall, 2),
        "steady_photos_per_s": (round(v, 2) if (v := _steady(out / "shards", settings.workers)) else None),
        "load_before": load_before, "load_after": _load(),
    }
    print(json.dumps(result), flush=True)
    shutil.rmtree(out)
    return result


def resume_check(photos: Path, n_photos: int, work: Path, kills: int, seed: int) -> dict:
    """The CLI job (``python -m msma collection``, 2 workers) SIGKILLed ``kills`` times at a random moment of its
    processing (the main process only: its workers must die with it), then run to the end; does the table hold
    every photo exactly once?"""
    import random
    import signal
    import subprocess

    import pyarrow.parquet as pq

    rng = random.Random(seed)
    out = work / "out-resume"
    command = [sys.executable, "-m", "msma", "collection", str(photos), "-o", str(out), "--method", "network",
               "--detector", "auto", "--workers", "2", "--batch-size", "8", "--no-progress"]
    events = []

    def shard_count() -> int:
        return len(list((out / "shards").glob("part-*.parquet"))) if (out / "shards").is_dir() else 0

    for _ in range(kills):
        before, delay = shard_count(), rng.uniform(0.0, 8.0)
        job = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.perf_counter()
        # a random moment of the processing: once this run has written its first shard, then up to 8 s later
        while shard_count() == before and job.poll() is None and time.perf_counter() - start < 120:
            time.sleep(0.05)
        time.sleep(delay)
        finished = job.poll() is not None
        if not finished:
            job.send_signal(signal.SIGKILL)
        job.wait()
        events.append({"killed_after_s": round(time.perf_counter() - start, 1), "finished_first": finished,
                       "shards_before": before, "shards_then": shard_count()})
        time.sleep(1.0)  # the workers' death signal
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids = pq.read_table(out / "faces.parquet", columns=["photo_id", "face_index"]).to_pylist()
    keys = [(r["photo_id"], r["face_index"]) for r in ids]
    expected = {p.name for p in photos.iterdir()}
    found = {r["photo_id"] for r in ids}
    result = {"photos": n_photos, "kills": events, "rows": len(ids), "duplicate_rows": len(keys) - len(set(keys)),
              "missing_photos": len(expected - found), "unexpected_photos": len(found - expected)}
    result["every_photo_exactly_once"] = (result["duplicate_rows"] == 0 and not result["missing_photos"]
                                          and not result["unexpected_photos"])
    print(json.dumps(result), flush=True)
    shutil.rmtree(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=50, help="photos of the set used (default 50)")
    parser.add_argument("--repeat", type=int, default=4, help="copies of each photo (default 4)")
    parser.add_argument("--fitting-repeat", type=int, default=1, help="copies of each photo for fitting (default 1)")
    parser.add_argument("--original-repeat", type=int, default=1,
                        help="copies of each photo in the original-size set (default 1)")
    parser.add_argument("--quick", action="store_true", help="only the network path on the 250px set")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", default="throughput")
    parser.add_argument("--kills", type=int, default=5, help="random kills of the resume check (0: skip it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        _run_one(args.run_one)
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="msma-throughput-") as tmp:
        work = Path(tmp)
        n_small, small_desc = prepare_photos(work / "250px", args.photos, args.repeat, 250)
        sets = {"250px": (work / "250px", n_small, small_desc)}
        if not args.quick:
            sets["original"] = (work / "original",
                               *prepare_photos(work / "original", args.photos, args.original_repeat, None))
            sets["fitting-250px"] = (work / "fitting-250px",
                                     *prepare_photos(work / "fitting-250px", args.photos, args.fitting_repeat, 250))
        network = CollectionSettings(method="network", batch_size=16)
        configs = [
            ("network-mediapipe-1w", "250px", {"detector": "mediapipe", "workers": 1}),
            ("network-mediapipe-2w", "250px", {"detector": "mediapipe", "workers": 2}),
            ("network-auto-1w", "250px", {"detector": "auto", "workers": 1}),
            ("network-auto-2w", "250px", {"detector": "auto", "workers": 2}),
        ]
        if not args.quick:
            configs += [
                ("network-auto-2w-original", "original", {"detector": "auto", "workers": 2}),
                ("fitting-auto-2w", "fitting-250px", {"method": "fitting", "detector": "auto", "workers": 2,
                                                      "batch_size": 8}),
            ]
        for name, set_name, overrides in configs:
            folder, n, _ = sets[set_name]
            settings = CollectionSettings(**{**network.__dict__, **overrides})
            entry = run_config(name, folder, n, settings, work)
            entry["photo_set"] = set_name
            results.append(entry)
        resume = None
        if args.kills and not args.quick:
            folder, n, _ = sets["250px"]
            resume = resume_check(folder, n, work, args.kills, args.seed)
    by_name = {r["config"]: r for r in results}
    summary = {}
    for detector in ("mediapipe", "auto"):
        one, two = by_name.get(f"network-{detector}-1w"), by_name.get(f"network-{detector}-2w")
        if one and two:
            for kind in ("wall", "steady"):
                a, b = one[f"{kind}_photos_per_s"], two[f"{kind}_photos_per_s"]
                if a and b:
                    summary[f"{detector}_2w_over_1w_{kind}"] = round(b / a, 2)
    payload = {
        "cpu": _cpu(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "photo_sets": {k: v[2] for k, v in sets.items()}, "results": results, "speedups": summary,
        "resume": resume,
        "targets": {"network_photos_per_s": 20, "two_workers_over_one": 1.7},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# Photo-collection throughput (benchmarks/throughput.py)", "",
        f"CPU: {payload['cpu']}, {payload['cpu_count']} cores (shared machine: see the load columns). "
        "One thread per worker. Targets: network path >= 20 photos/s, 2 workers >= 1.7x one.", "",
        *[f"- {k}: {v}" for k, v in payload["photo_sets"].items()], "",
        "| config | photo set | method | detector | workers | photos | faces | failed | s | wall photos/s | "
        "steady photos/s | load before | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['config']} | {r['photo_set']} | {r['method']} | {r['detector']} | {r['workers']} | "
                     f"{r['photos']} | {r['faces']} | {r['failed_photos']} | {r['seconds']} | "
                     f"{r['wall_photos_per_s']} | {r['steady_photos_per_s']} | {r['load_before']} | "
                     f"{r['load_after']} |")
    lines += ["", "2 workers / 1 worker: " + (", ".join(f"{k} {v}x" for k, v in summary.items()) or "n/a"), ""]
    if resume:
        lines += ["## Resume after kills", "",
                  f"`python -m msma collection` (network, auto detector, 2 workers, batch 8) on the 250px set "
                  f"({resume['photos']} photos), SIGKILLed {len(resume['kills'])} times at random moments of the "
                  f"processing (0-8 s after the run's first shard), then run "
                  f"to the end: {resume['rows']} rows, {resume['duplicate_rows']} duplicate rows, "
                  f"{resume['missing_photos']} photos missing, {resume['unexpected_photos']} unexpected; every photo "
                  f"exactly once: **{resume['every_photo_exactly_once']}**.", "",
                  "| kill | after s | job had finished | shards before | shards then |", "|---|---|---|---|---|",
                  *[f"| {i + 1} | {k['killed_after_s']} | {k['finished_first']} | {k['shards_before']} | "
                    f"{k['shards_then']} |"
                    for i, k in enumerate(resume["kills"])], ""]
    (out / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
