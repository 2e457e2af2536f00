from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from annotate_helpers import face_points, write_photo

from annotate.importer import PathEscapeError, import_folder, import_hf, safe_name
from annotate.prelabel import CallablePrelabeller, PrelabelFace, get_prelabeller
from annotate.skeleton import OUTSIDE
from annotate.store import Store


def test_dedup_by_hash_within_and_across_imports(store: Store, photo_folder: Path) -> None:
    shutil.copy(photo_folder / "img2.png", photo_folder / "copy_of_img2.png")
    r1 = import_folder(store, photo_folder)
    assert len(r1.added) == 4 and len(r1.duplicates) == 1 and r1.faces_imported == 2
    r2 = import_folder(store, photo_folder)
    assert r2.added == [] and len(r2.duplicates) == 5
    assert any("already has annotations" in w for w in r2.warnings)  # labels not duplicated either
    assert len(store.list_images()) == 4
    assert all(len(store.history(i.id)) <= 1 for i in store.list_images())
    assert all(store.image_path(i).is_file() for i in store.list_images())


def test_paths_escaping_the_import_folder_are_refused(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    write_photo(folder / "ok.png", 1)
    secret = write_photo(tmp_path / "outside.png", 2)
    os.symlink(secret, folder / "link.png")
    (folder / "labels.xml").write_text(
        "<dataset><images>\n<image file='../outside.png'>\n<box top='1' left='1' width='9' height='9'/></image>\n"
        "<image file='/etc/hostname'><box top='1' left='1' width='9' height='9'/></image>\n"
        "</images></dataset>")
    r = import_folder(store, folder)
    assert [i.name for i in store.list_images()] == ["ok.png"]
    refused = " ".join(name for name, _ in r.refused)
    assert "link.png" in refused and "../outside.png" in refused and "/etc/hostname" in refused
    assert "labels.xml:2" in refused  # names the file and line
    for bad in ("../x.png", "/abs/x.png", "a/../../x.png", "C:/x.png", ""):
        with pytest.raises(PathEscapeError):
            safe_name(bad)
    assert safe_name("./a/b.png") == "a/b.png"


def test_unreadable_images_are_skipped_and_listed(store: Store, photo_folder: Path) -> None:
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (photo_folder / "empty.png").write_bytes(b"")
    r = import_folder(store, photo_folder)
    assert sorted(n for n, _ in r.unreadable) == ["broken.jpg", "empty.png"]
    assert len(r.added) == 4
    assert "unreadable: broken.jpg" in r.summary()


def test_malformed_label_file_reported_with_line_images_still_imported(store: Store, photo_folder: Path) -> None:
    (photo_folder / "img2.pts").write_text("version: 1\nn_points: 68\n{\n1 2\noops\n}\n")
    r = import_folder(store, photo_folder)
    assert any(e.startswith(f"{photo_folder / 'img2.pts'}:5:") for e in r.errors), r.errors
    assert len(r.added) == 4 and r.faces_imported == 2


def test_labelled_point_outside_image_rejected_or_flagged(store: Store, photo_folder: Path, tmp_path: Path) -> None:
    from annotate.formats import write_pts

    pts = face_points(5)
    pts[0] = (-15.0, 50.0)
    write_pts(photo_folder / "img3.pts", pts)
    r = import_folder(store, photo_folder)
    assert any("img3.pts" in e and "point 0" in e and "outside" in e for e in r.errors)
    other = Store(tmp_path / "p2", create=True)
    other.create_project("default")
    r2 = import_folder(other, photo_folder, outside="flag")
    assert r2.ok
    img = next(i for i in other.list_images() if i.name == "img3.png")
    ann = other.get_annotation(img.id)
    assert ann.visibility[0] == OUTSIDE and ann.points[0, 0] == -15.0


def fake_detector(image: np.ndarray) -> list[PrelabelFace]:
    """Confidence from the mean brightness so tests can predict the queue order."""
    h, w = image.shape[:2]
    conf = float(image.mean() / 255.0)
    return [PrelabelFace(face_points(0, w / 2, h / 2, 0.5 * w), conf, np.array([0, 0, w / 2, h / 2]))]


def test_prelabel_with_injected_detector_orders_queue_worst_first(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "shades"
    from PIL import Image

    for i, level in enumerate([200, 50, 120]):
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.full((100, 120, 3), level, np.uint8)).save(folder / f"s{i}.png")
    r = import_folder(store, folder, prelabeller=CallablePrelabeller(fake_detector, "fake"))
    assert r.images_prelabelled == 3 and r.faces_prelabelled == 3
    queue = store.list_images(order="queue")
    assert [i.name for i in queue] == ["s1.png", "s2.png", "s0.png"]
    assert queue[0].confidence == pytest.approx(50 / 255)
    ann = store.get_annotation(queue[0].id)
    assert ann.updated_by == "model:fake" and ann.source == "prelabel:fake" and ann.revision == 1
    assert store.get_image(queue[0].id).status == "todo"


def test_prelabeller_specs() -> None:
    assert get_prelabeller("none") is None
    assert get_prelabeller("detector:dlib").name == "detector:dlib"
    assert get_prelabeller("detector:auto+dlib").check == "dlib"
    assert get_prelabeller("annotate_helpers:face_points").name == "annotate_helpers:face_points"
    with pytest.raises(ValueError):
        get_prelabeller("bogus")


def test_hf_import_refuses_escaping_names_and_dedups(store: Store, tmp_path: Path) -> None:
    import datasets

    a = write_photo(tmp_path / "a.png", 1)
    b = write_photo(tmp_path / "b.png", 2)
    ds = datasets.Dataset.from_dict(
        {"image": [str(a), str(a), str(b)], "image_name": ["a.png", "a.png", "../../b.png"],
         "landmarks": [face_points(1).tolist(), face_points(2).tolist(), face_points(3).tolist()],
         "face": [0, 1, 0]},
        features=datasets.Features({"image": datasets.Image(), "image_name": datasets.Value("string"),
                                    "landmarks": datasets.Array2D((68, 2), "float64"),
                                    "face": datasets.Value("int32")}))
    r = import_hf(store, ds, image_root=tmp_path)
    assert len(r.added) == 1 and r.faces_imported == 2  # two faces of one image
    assert [n for n, _ in r.refused] == ["../../b.png"]
