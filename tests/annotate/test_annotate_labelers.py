"""What labelers and project owners rely on outside the editor: honest .pts for outside points, every photo format,
a "skipped N files: why" import summary, exports that cannot leak unreviewed work, `init DIR`, read-only without
users unless open access was chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from annotate_helpers import face_points, write_photo
from PIL import Image

from annotate.cli import main, open_store_for_ui
from annotate.exporter import export_project
from annotate.formats import read_pts, write_pts
from annotate.importer import import_folder
from annotate.skeleton import OCCLUDED, OUTSIDE, VISIBLE
from annotate.store import PermissionDenied, Store


def test_pts_writes_outside_points_as_unknown_and_reads_them_back_outside(tmp_path: Path) -> None:
    pts = face_points(1)
    vis = np.full(68, VISIBLE)
    vis[[3, 40]] = OUTSIDE  # both still have a position (a labeler marked them outside afterwards)
    vis[7] = OCCLUDED
    write_pts(tmp_path / "a.pts", pts, vis)
    lines = (tmp_path / "a.pts").read_text().splitlines()
    assert lines[3 + 3] == "-1 -1" and lines[3 + 40] == "-1 -1"
    face = read_pts(tmp_path / "a.pts")
    assert list(np.nonzero(face.visibility == OUTSIDE)[0]) == [3, 40]
    keep = np.setdiff1d(np.arange(68), [3, 40])
    np.testing.assert_array_equal(face.points[keep], pts[keep])  # exact
    assert face.visibility[7] == VISIBLE  # .pts has no occlusion flag (documented; COCO / hf keep it)
    write_pts(tmp_path / "b.pts", face.points, face.visibility)
    assert (tmp_path / "b.pts").read_text() == (tmp_path / "a.pts").read_text()  # a fixed point


def test_ppm_and_pgm_photos_import_with_their_pts_and_skipped_files_are_listed(tmp_path: Path, store: Store) -> None:
    folder = tmp_path / "in"
    write_photo(folder / "a.png", 0)
    Image.open(folder / "a.png").save(folder / "b.ppm")
    Image.open(folder / "a.png").convert("L").rotate(90).save(folder / "c.pgm")
    write_pts(folder / "b.pts", face_points(2))
    write_pts(folder / "orphan.pts", face_points(3))
    (folder / "notes.txt").write_text("hello")
    (folder / "meta.json").write_text('{"not": "coco"}')
    report = import_folder(store, folder)
    assert sorted(report.added) == ["a.png", "b.ppm", "c.pgm"] and report.faces_imported == 1
    skipped = dict(report.skipped)
    assert skipped == {"notes.txt": "not a photo format the app reads or a label file",
                       "meta.json": "not a dlib XML or COCO keypoints file", "orphan.pts": "no photo of that name"}
    assert "skipped 3 file(s)" in report.summary() and "1 .txt (not a photo format" in report.summary()
    ppm = next(r for r in store.list_images() if r.name == "b.ppm")
    np.testing.assert_array_equal(store.get_annotation(ppm.id).points, read_pts(folder / "b.pts").points)


def test_export_defaults_to_done_and_approved_only(tmp_path: Path, filled_store: Store) -> None:
    images = filled_store.list_images(order="id")
    filled_store.set_status(images[0].id, "done", user="owner")
    filled_store.set_status(images[1].id, "rejected", user="owner", comment="jaw is off")
    report = export_project(filled_store, tmp_path / "out", "coco")
    assert report.images == 1 and report.faces == 1
    assert report.left_out == {"rejected": 1, "todo": 2}
    assert "left out 3 image(s)" in report.summary() and "--status all" in report.summary()
    assert export_project(filled_store, tmp_path / "all", "coco", statuses="all").images == 2  # 2 labelled of 4


def test_cli_init_dir_export_status_and_serve_access(tmp_path: Path, photo_folder: Path, capsys) -> None:
    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0  # as the app's set-up instructions say
    assert (project / "annotate.sqlite").is_file()
    assert main(["import", str(photo_folder), "-d", str(project)]) == 0
    assert main(["export", "-d", str(project), "-f", "pts", "-o", str(tmp_path / "e1")]) == 0
    assert "exported 0 face(s)" in capsys.readouterr().out  # nothing reviewed yet: nothing leaks
    assert main(["export", "-d", str(project), "-f", "pts", "-o", str(tmp_path / "e2"), "--status", "all"]) == 0
    assert len(list((tmp_path / "e2").glob("*.pts"))) == 2
    assert main(["export", "-d", str(project), "-f", "pts", "-o", str(tmp_path / "e3"), "--status", "dun"]) == 2
    assert "unknown status" in capsys.readouterr().err

    image_id = Store(project).list_images()[0].id
    closed = open_store_for_ui(project)
    assert not closed.can(None, "label") and not closed.can("anyone", "label")
    with pytest.raises(PermissionDenied):
        closed.set_status(image_id, "done", user=None)
    assert open_store_for_ui(project, open_access=True).can(None, "label")
    Store(project).add_user("lab", "pw1234567", "labeler")
    for store in (open_store_for_ui(project), open_store_for_ui(project, open_access=True)):
        assert store.can("lab", "label") and not store.can(None, "label")  # users exist: logins count
