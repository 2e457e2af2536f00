"""An image and its imported labels are one transaction; imports that import nothing say so with a non-zero exit;
faces without any labelled point are reported, not stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from annotate_helpers import face_points, write_photo

from annotate.cli import main
from annotate.formats import write_pts
from annotate.importer import import_folder
from annotate.store import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_face_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_photo(folder / "a_solo.png", 1)
    write_pts(folder / "a_solo.pts", face_points(1))
    write_photo(folder / "b_pair.png", 2)
    write_pts(folder / "b_pair_0.pts", face_points(2))
    write_pts(folder / "b_pair_1.pts", face_points(3))
    return folder


def test_failure_between_two_faces_keeps_neither_the_image_nor_its_labels(store: Store, two_face_folder) -> None:
    calls = []

    def crash() -> None:
        calls.append(1)
        if len(calls) == 3:  # a_solo, b_pair face 0, then b_pair face 1 fails
            raise RuntimeError("power cut")

    store._fault_hook = crash
    with pytest.raises(RuntimeError, match="power cut"):
        import_folder(store, two_face_folder)
    store._fault_hook = None
    names = {r.name for r in store.list_images()}
    assert names == {"a_solo.png"}  # b_pair: no row without its labels, no half of its faces
    assert len(store.get_annotations(store.list_images()[0].id)) == 1
    report = import_folder(store, two_face_folder)  # and the next import completes it
    assert report.added == ["b_pair.png"] and report.faces_imported == 2


_KILL_IMPORT = r"""
import os, signal, sys
from annotate.importer import import_folder
from annotate.store import Store
s = Store(sys.argv[1])
calls = []
def die():
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
s._fault_hook = die
import_folder(s, sys.argv[2])
"""


def test_sigkill_during_an_import_leaves_whole_images(store: Store, two_face_folder) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", _KILL_IMPORT, str(store.db_path), str(two_face_folder)],
                            env=env, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    fresh = Store(store.db_path)
    assert fresh.integrity_check() == "ok"
    for rec in fresh.list_images():
        expected = {"a_solo.png": 1, "b_pair.png": 2}[rec.name]
        assert len(fresh.get_annotations(rec.id)) == expected, rec.name
    assert {r.name for r in fresh.list_images()} == {"a_solo.png"}


def test_import_of_only_unreadable_images_exits_non_zero(tmp_path: Path, capsys) -> None:
    d = str(tmp_path / "proj")
    assert main(["init", "-d", d]) == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"x{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["import", str(broken), "-d", d]) == 2
    assert "every image was unreadable" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import", str(empty), "-d", d]) == 2
    assert "no image found" in capsys.readouterr().err


def test_face_without_any_labelled_point_is_reported(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_photo(folder / "a.png", 1)
    (folder / "a.pts").write_text("version: 1\nn_points: 68\n{\n" + "-1 -1\n" * 68 + "}\n")
    report = import_folder(store, folder)
    assert report.added == ["a.png"] and report.faces_imported == 0
    assert any("no labelled point" in e for e in report.errors)
    assert not store.get_annotations(store.list_images()[0].id)
