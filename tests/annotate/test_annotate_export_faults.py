"""Exports killed (SIGKILL before / after each file, SIGXFSZ in the middle of a write) or hitting a full disk:
each file at its final name is complete, an export's index (dlib XML, COCO JSON, dataset_dict.json) exists only
when complete, and the CLI says what went wrong in one line. Faults come from export_child.py (audit hook on
open / rename, RLIMIT_FSIZE), below the code under test.

MSMA_FAULT_SWEEP=1 kills at every open and rename and at more byte offsets (slower)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from annotate_helpers import face_points, write_photo

from annotate.formats import FormatError, read_coco, read_dlib_xml, read_pts, write_pts
from annotate.importer import import_folder
from annotate.store import Store
from tests.security_counts import record

CHILD = Path(__file__).with_name("export_child.py")
REPO = Path(__file__).resolve().parents[2]
N_IMAGES = 6


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("export_faults")
    photos = root / "photos"
    originals = {}
    for i in range(N_IMAGES):
        path = write_photo(photos / ("test" if i % 2 else "train") / f"p{i}.png", i)
        write_pts(path.with_suffix(".pts"), face_points(i))
        originals[path.relative_to(photos).as_posix()] = path.read_bytes()
    store = Store(root / "project", create=True)
    store.create_project("default")
    report = import_folder(store, photos)
    assert report.ok and report.faces_imported == N_IMAGES, report.summary()
    store.close()
    return root / "project", originals


def run_child(store: Path, out: Path, fmt: str, mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(CHILD.parent)]))
    return subprocess.run([sys.executable, str(CHILD), str(store), str(out), fmt, mode], capture_output=True,
                          text=True, timeout=300, env=env, cwd=REPO)


def index_faces(out: Path) -> dict[str, int]:
    """Faces in each dlib XML / COCO JSON of a finished export."""
    found = {}
    for p in out.glob("*.xml"):
        found[p.name] = sum(len(i.faces) for i in read_dlib_xml(p))
    for p in out.glob("*_keypoints.json"):
        found[p.name] = sum(len(i.faces) for i in read_coco(p))
    return found


def broken_files(out: Path, fmt: str, originals: dict[str, bytes], expected: dict[str, int]) -> list[str]:
    """Files under their final names that are not complete (temporary '.*' names are not final names)."""
    bad = []
    for name, data in originals.items():
        p = out / name
        if p.exists() and fmt != "hf" and p.read_bytes() != data:
            bad.append(f"{name}: image differs from the original")
    for p in sorted(out.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(out).parts):
            continue
        try:
            if p.suffix == ".pts":
                read_pts(p)
            elif p.suffix == ".xml" or (p.suffix == ".json" and fmt == "coco"):
                reader = read_dlib_xml if p.suffix == ".xml" else read_coco
                faces = sum(len(i.faces) for i in reader(p))
                if faces != expected.get(p.name):
                    bad.append(f"{p.name}: {faces} faces, the complete export has {expected.get(p.name)}")
        except FormatError as exc:
            bad.append(f"{p.name}: {exc}")
    if fmt == "hf" and (out / "dataset_dict.json").exists():
        import datasets

        try:
            ds = datasets.load_from_disk(str(out))
            rows = sum(d.num_rows for d in ds.values())
            if rows != N_IMAGES:
                bad.append(f"dataset has {rows} rows")
        except Exception as exc:  # noqa: BLE001 - any failure to load is a broken export
            bad.append(f"dataset_dict.json present but the dataset does not load: {type(exc).__name__}: {exc}")
    return bad


SWEEP = os.environ.get("MSMA_FAULT_SWEEP") == "1"


def _kill_points(opens: int, renames: int) -> list[str]:
    """First and last file opened for writing (nothing written / the index in flight) and the last rename (the
    index about to be published); every one of them with MSMA_FAULT_SWEEP=1."""
    if SWEEP:
        return [f"open:{k}" for k in range(1, opens + 1)] + [f"rename:{k}" for k in range(1, renames + 1)]
    return [f"open:{k}" for k in sorted({1, opens})] + ([f"rename:{renames}"] if renames else [])


@pytest.fixture(scope="module")
def dry_runs(project, tmp_path_factory) -> dict[str, tuple[int, int, dict[str, int]]]:
    """Per format: (files opened for writing, renames, faces per index file) of an export without faults."""
    store, originals = project
    out = {}
    for fmt in ("coco", "dlib", "pts", "hf"):
        folder = tmp_path_factory.mktemp(f"dry_{fmt}")
        result = run_child(store, folder, fmt, "count")
        assert result.returncode == 0, result.stderr
        assert not broken_files(folder, fmt, originals, index_faces(folder))
        opens, renames = (int(v) for v in result.stdout.split()[-2:])
        out[fmt] = (opens, renames, index_faces(folder))
        assert sum(out[fmt][2].values()) == (N_IMAGES if fmt in ("coco", "dlib") else 0)
    return out


@pytest.mark.parametrize("fmt", ["coco", "dlib", "pts", "hf"])
def test_export_killed_leaves_complete_files_or_none(project, dry_runs, tmp_path, fmt: str) -> None:
    store, originals = project
    opens, renames, expected = dry_runs[fmt]
    broken = []
    points = _kill_points(opens, renames)
    points += [f"crash:{limit}" for limit in (FULL_AT_SWEEP if SWEEP else FULL_AT)[fmt]]  # killed mid-write
    killed = 0
    for point in points:
        out = tmp_path / point.replace(":", "")
        result = run_child(store, out, fmt, point)
        killed += result.returncode in (-signal.SIGKILL, -signal.SIGXFSZ)
        broken += [f"{point}: {b}" for b in broken_files(out, fmt, originals, expected)]
    record(f"export_kill_{fmt}", kills=killed, incomplete_files_after_kill=len(broken))
    assert killed == len(points) and not broken, broken
    # the next export into a killed export's folder completes and removes the leftovers
    again = run_child(store, out, fmt, "count")
    assert again.returncode == 0 and not broken_files(out, fmt, originals, expected)
    assert not list(out.rglob(".*"))


FULL_AT = {"coco": (9000,), "dlib": (9000,), "pts": (600,), "hf": (200_000,)}  # bytes: mid-file for each format
FULL_AT_SWEEP = {"coco": (600, 4000, 9000), "dlib": (600, 4000, 9000), "pts": (100, 600), "hf": (4096, 200_000)}


@pytest.mark.parametrize("fmt", ["coco", "dlib", "pts", "hf"])
def test_export_on_a_full_disk_fails_plainly(project, dry_runs, tmp_path, fmt: str) -> None:
    store, originals = project
    expected = dry_runs[fmt][2]
    limits = (FULL_AT_SWEEP if SWEEP else FULL_AT)[fmt]
    broken, tracebacks, unclear, leftovers = [], 0, [], 0
    for limit in limits:
        out = tmp_path / f"full{limit}"
        result = run_child(store, out, fmt, f"fsize:{limit}")
        tracebacks += "Traceback" in result.stderr
        last = (result.stderr.strip().splitlines() or [""])[-1]  # (datasets draws progress bars above it)
        if result.returncode != 2 or not last.startswith("error: ") or "File too large" not in last:
            unclear.append((limit, result.returncode, result.stderr[-600:]))
        broken += [f"{limit}: {b}" for b in broken_files(out, fmt, originals, expected)]
        leftovers += len([p for p in out.rglob(".*") if p.is_file() and ".tmp-" in p.name])
    record(f"export_disk_full_{fmt}", runs=len(limits), tracebacks=tracebacks, incomplete_files=len(broken),
           temporary_files_left=leftovers)
    assert tracebacks == 0 and not unclear and not broken and not leftovers, (unclear, broken)
