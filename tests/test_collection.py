"""Photo collections (msma.collection): one row per face, error rows, resume after kills, dataset sources, CLI.

Small and fast: 256-px thumbnails of examples/, the network method and the dlib detector (dlib, unlike mediapipe,
keeps working in a child forked from a process that has used it, which the kill test relies on)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from msma.collection import (
    CollectionSettings,
    finished_photo_ids,
    iter_rows,
    load_collection,
    open_source,
    run_collection,
    source_from_dataset,
    worker_reconstructor,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SETTINGS = CollectionSettings(method="network", detector="dlib", batch_size=2)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """12 photos (thumbnails of the 4 examples, mirrored and shrunk copies, one in a sub-folder), a corrupt file and
    an image without a face."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "sub").mkdir()
    for i, path in enumerate(sorted(EXAMPLES.glob("*.jpg"))):
        image = Image.open(path).convert("RGB")
        image.thumbnail((256, 256))
        image.save(folder / f"p{i}_a.jpg")
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / f"p{i}_b.png")
        image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(folder / "sub" / f"p{i}_c.jpg")
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    Image.new("RGB", (96, 96), (128, 128, 128)).save(folder / "blank.png")
    return folder


@pytest.fixture(scope="module")
def reference(photo_dir, tmp_path_factory):
    """One uninterrupted run: (report, rows)."""
    out = tmp_path_factory.mktemp("reference")
    report = run_collection(open_source(photo_dir), out, SETTINGS, progress=False)
    return report, list(iter_rows(out))


def _faces_per_photo(rows) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["photo_id"]] = counts.get(row["photo_id"], 0) + 1
    return counts


def test_one_row_per_face_and_error_rows(photo_dir, reference):
    report, rows = reference
    ids = {row["photo_id"] for row in rows}
    assert ids == {p.relative_to(photo_dir).as_posix() for p in photo_dir.rglob("*") if p.is_file()}
    assert "sub/p0_c.jpg" in ids
    assert report.photos == 14 and report.processed == 14 and report.skipped == 0
    by_id = {row["photo_id"]: row for row in rows}
    assert by_id["broken.jpg"]["status"] == "error" and "ImageLoadError" in by_id["broken.jpg"]["error"]
    assert by_id["blank.png"]["status"] == "no_face" and "NoFaceError" in by_id["blank.png"]["error"]
    assert by_id["broken.jpg"]["face_index"] == -1 and by_id["broken.jpg"]["identity"] is None
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == report.faces >= 12 and report.failed == 2
    keys = [(row["photo_id"], row["face_index"]) for row in rows]
    assert len(keys) == len(set(keys))
    group = [row for row in ok if row["photo_id"] == "p3_a.jpg"]  # 04_group.jpg: several faces, largest first
    assert len(group) >= 2 and [row["face_index"] for row in group] == list(range(len(group)))
    for row in ok:
        assert row["method"] == "network" and row["detector"] == "dlib" and row["error"] is None
        assert np.asarray(row["landmarks68"]).shape == (68, 2) and np.asarray(row["fitted_landmarks68"]).shape == (
            68, 2)
        box = np.asarray(row["box"])
        assert box.shape == (4,) and box[2] > box[0] and box[3] > box[1]
        assert len(row["identity"]) == 100 and len(row["expression"]) == 53 and len(row["lighting"]) == 27
        assert len(row["arkit"]) == 52 and all(0 <= v <= 1 for v in row["arkit"].values())
        assert 0 < row["fit_error_px"] < 30
        assert row["timings"]["detect"] > 0 and row["timings"]["network"] > 0
        assert row["timings"]["total"] >= row["timings"]["detect"] + row["timings"]["network"]
    table = load_collection(report.table.parent)
    assert table.num_rows == len(rows) and "arkit" in table.column_names


def test_rows_match_the_single_photo_api(photo_dir, reference):
    """A collection row holds what `Reconstructor.__call__` gives for that photo."""
    _, rows = reference
    reconstructor = worker_reconstructor(SETTINGS)
    result = reconstructor(photo_dir / "p3_a.jpg", texture=False)
    group = sorted((row for row in rows if row["photo_id"] == "p3_a.jpg"), key=lambda row: row["face_index"])
    assert len(group) == len(result.faces)
    for row, face in zip(group, result.faces):
        np.testing.assert_allclose(row["identity"], face.coefficients.identity[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(row["landmarks68"], face.detected_landmarks, atol=1e-3)
        np.testing.assert_allclose(row["fitted_landmarks68"], face.fitted_landmarks, atol=1e-2)
        assert row["yaw"] == pytest.approx(face.pose.yaw, abs=1e-3)
        assert row["fit_error_px"] == pytest.approx(face.landmark_error_px, abs=1e-3)


def test_rerun_skips_finished_photos(photo_dir, reference):
    report, rows = reference
    out = report.table.parent
    shards = sorted((out / "shards").iterdir())
    again = run_collection(open_source(photo_dir), out, SETTINGS, progress=False)
    assert again.processed == 0 and again.skipped == 14
    assert sorted((out / "shards").iterdir()) == shards
    assert list(iter_rows(out)) == rows


def _shards(out: Path) -> int:
    return len(list((out / "shards").glob("part-*.parquet"))) if (out / "shards").is_dir() else 0


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def kill_photo_dir(photo_dir, tmp_path_factory) -> Path:
    """The 14 photos and 12 more variants (greyscale, mirrored and shrunk, slightly shrunk): 26 photos, so that five
    kills, each a little into the run, still land before its end on a fast machine."""
    folder = tmp_path_factory.mktemp("kill_photos")
    shutil.copytree(photo_dir, folder, dirs_exist_ok=True)
    for path in sorted(photo_dir.glob("p*_a.jpg")):
        image, stem = Image.open(path), path.name.removesuffix("_a.jpg")
        image.convert("L").convert("RGB").save(folder / f"{stem}_d.jpg")
        mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mirrored.resize((image.width * 3 // 4, image.height * 3 // 4)).save(folder / f"{stem}_e.png")
        image.resize((image.width * 9 // 10, image.height * 9 // 10)).save(folder / f"{stem}_f.jpg")
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks and reads /proc")
def test_killed_five_times_every_photo_exactly_once(kill_photo_dir, tmp_path):
    """Kill (SIGKILL) the job at a random point five times, the first while a pool of two workers runs it; the rerun
    finishes it and the final table holds every photo exactly once, with the rows of an uninterrupted run.

    Each kill comes one or two shards plus a random moment into the job, but never later than a cap that leaves
    room for the kills still to come, so that on a fast machine no job runs to its end before its kill."""
    expected = list(iter_rows(run_collection(open_source(kill_photo_dir), tmp_path / "reference", SETTINGS,
                                             progress=False).table.parent))
    photos = len({row["photo_id"] for row in expected})
    attempts = 5
    rng = random.Random(13)
    out = tmp_path / "killed"
    worker_reconstructor(SETTINGS)  # loaded here, inherited by the forked jobs
    source = open_source(kill_photo_dir)
    for attempt in range(attempts):
        workers = 2 if attempt == 0 else 1
        settings = CollectionSettings(**{**SETTINGS.__dict__, "batch_size": 1, "workers": workers})
        before = _shards(out)
        cap = photos - 3 * (attempts - attempt)  # kill at once here: a shard or two may still land before the kill
        assert before < cap, "an earlier job ran too far"
        pid = os.fork()
        if pid == 0:  # the job; never returns into pytest
            try:
                run_collection(source, out, settings, progress=False)
            finally:
                os._exit(0)
        target = min(before + rng.randint(1, 2), cap)
        wait_after = rng.uniform(0.0, 0.2)  # anywhere in the next batch, possibly while a shard is written
        deadline = time.monotonic() + 120
        while _shards(out) < target and time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.005)
        kill_at = time.monotonic() + wait_after
        while time.monotonic() < kill_at and _shards(out) < cap:
            time.sleep(0.005)
        workers_pids = _children_of(pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if workers > 1:  # the pool's workers die with the job: no orphan keeps writing shards
            assert workers_pids
            deadline = time.monotonic() + 10
            while any(_alive(p) for p in workers_pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(_alive(p) for p in workers_pids)
        assert before < _shards(out) < photos, "the kill must land mid-run"
    done_before = len(finished_photo_ids(out))
    report = run_collection(source, out, SETTINGS, progress=False)
    assert report.skipped == done_before and report.processed == photos - done_before > 0
    rows = list(iter_rows(out))
    assert _faces_per_photo(rows) == _faces_per_photo(expected)
    keys = [(row["photo_id"], row["face_index"]) for row in rows]
    assert len(keys) == len(set(keys))
    assert not list((out / "shards").glob(".tmp-*"))
    by_key = {(row["photo_id"], row["face_index"]): row for row in expected}
    for row in rows:
        if row["status"] == "ok":
            np.testing.assert_allclose(row["identity"], by_key[row["photo_id"], row["face_index"]]["identity"],
                                       atol=1e-5)


def test_dataset_source_with_meshes(photo_dir, tmp_path):
    """A saved `datasets` dataset with an Image column and an id column in; an empty image is an error row; meshes
    are written when asked and listed in their rows."""
    import datasets

    files = [photo_dir / "p0_a.jpg", photo_dir / "p1_b.png"]
    data = datasets.Dataset.from_dict({"image": [str(f) for f in files] + [None], "name": ["a", "b", "empty"]})
    data = data.cast_column("image", datasets.Image())
    data.save_to_disk(str(tmp_path / "saved"))
    source = open_source(tmp_path / "saved", id_column="name")
    assert source.photo_ids == ["a", "b", "empty"]
    settings = CollectionSettings(**{**SETTINGS.__dict__, "mesh_formats": ("ply", "json"), "texture": False})
    torch_threads = torch.get_num_threads()
    report = run_collection(source, tmp_path / "out", settings, progress=False)
    assert torch.get_num_threads() == torch_threads  # the in-process worker's thread limit ends with the run
    rows = list(iter_rows(tmp_path / "out"))
    assert report.processed == 3 and {row["photo_id"] for row in rows} == {"a", "b", "empty"}
    empty = next(row for row in rows if row["photo_id"] == "empty")
    assert empty["status"] == "error" and empty["error"]
    for row in rows:
        if row["status"] == "ok":
            assert sorted(Path(f).suffix for f in row["mesh_files"]) == [".json", ".ply"]
            assert all((tmp_path / "out" / f).is_file() for f in row["mesh_files"])
    with pytest.raises(ValueError, match="no Image column"):
        source_from_dataset(datasets.Dataset.from_dict({"x": [1]}))
    with pytest.raises(ValueError, match="unique"):
        source_from_dataset(datasets.Dataset.from_dict({"image": ["x", "y"], "id": [1, 1]}), image_column="image",
                            id_column="id")


def test_cli_collection(photo_dir, tmp_path, capsys):
    from msma.cli import main

    out = tmp_path / "cli"
    argv = ["collection", str(photo_dir), "-o", str(out), "--method", "network", "--detector", "dlib",
            "--batch-size", "4", "--no-progress"]
    assert main(argv) == 0
    assert "14 photo(s) processed" in capsys.readouterr().out
    assert pq.read_table(out / "faces.parquet").num_rows >= 14
    assert main(argv) == 0
    assert "0 photo(s) processed" in capsys.readouterr().out
    assert main(["collection", str(tmp_path / "missing"), "-o", str(out), "--no-progress"]) == 2
    assert main(["collection", str(photo_dir), "-o", str(out), "--batch-size", "0"]) == 2
