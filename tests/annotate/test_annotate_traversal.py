"""Imports that try to read outside the imported folder, through every format: dlib XML and COCO references
(``..``, absolute), symlinked photos / label files / ``.pts`` / folders, Hugging Face rows that name a path, and
``save_to_disk`` metadata (split names, ``_data_files``) pointing elsewhere. An audit hook records every open()
of the outside files; none may happen, and each attempt must be reported."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from annotate_helpers import face_points, write_photo

from annotate.formats import FaceLabel, FormatError, ImageLabels, write_coco, write_dlib_xml, write_pts
from annotate.importer import import_folder, import_hf, import_source
from annotate.store import Store
from tests.security_counts import record

_WATCH: set[str] = set()
_OPENED: list[str] = []
_ATTEMPTS = {"attempts": 0, "reported": 0}


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and args and isinstance(args[0], (str, bytes)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path in _WATCH:
            _OPENED.append(path)


sys.addaudithook(_audit)


@pytest.fixture
def outside(tmp_path: Path):
    """Files next to (not inside) the folder being imported, watched for reads."""
    secret = tmp_path / "secret"
    photo = write_photo(secret / "private.png", 7)
    pts = secret / "private.pts"
    write_pts(pts, face_points(7))
    labels = secret / "labels.json"
    labels.write_text(json.dumps({"images": [], "annotations": []}))
    watched = {str(photo), str(pts), str(labels), "/etc/passwd"}
    _WATCH.update(watched)
    _OPENED.clear()
    yield {"photo": photo, "pts": pts, "labels": labels}
    _WATCH.difference_update(watched)
    assert not _OPENED, f"read outside the imported folder: {_OPENED}"


def _new_store(tmp_path: Path, name: str = "project") -> Store:
    s = Store(tmp_path / name, create=True)
    s.create_project("default")
    return s


def _count(reported: bool) -> None:
    _ATTEMPTS["attempts"] += 1
    _ATTEMPTS["reported"] += bool(reported)
    record("import_traversal", reads_outside=len(_OPENED), **_ATTEMPTS)


def test_label_references_outside_the_folder(tmp_path: Path, outside) -> None:
    folder = tmp_path / "photos"
    write_photo(folder / "ok.png", 1)
    refs = ["../secret/private.png", str(outside["photo"]), "sub/../../secret/private.png"]
    face = FaceLabel(face_points(1), np.full(68, 2, np.int8))
    for fmt in ("dlib", "coco"):
        for i, ref in enumerate(refs):
            path = folder / f"{fmt}{i}_keypoints.json" if fmt == "coco" else folder / f"{fmt}{i}.xml"
            (write_coco if fmt == "coco" else write_dlib_xml)(path, [ImageLabels(ref, 200, 160, [face])])
    store = _new_store(tmp_path)
    report = import_folder(store, folder)
    assert report.added == ["ok.png"]
    for fmt in ("dlib", "coco"):
        for i in range(len(refs)):
            hit = any(f"{fmt}{i}" in name for name, _ in report.refused)
            _count(hit)
            assert hit, (fmt, i, report.summary())


def test_symlinks_out_of_the_folder(tmp_path: Path, outside) -> None:
    folder = tmp_path / "photos"
    write_photo(folder / "face.png", 1)
    (folder / "face.pts").symlink_to(outside["pts"])  # the reported .pts case
    write_photo(folder / "two.png", 2)
    write_pts(folder / "two_0.pts", face_points(2))
    (folder / "two_1.pts").symlink_to(outside["pts"])
    (folder / "link.png").symlink_to(outside["photo"])
    (folder / "labels_keypoints.json").symlink_to(outside["labels"])
    (folder / "linked_dir").symlink_to(outside["photo"].parent, target_is_directory=True)
    store = _new_store(tmp_path)
    report = import_folder(store, folder)
    refused = {name for name, _ in report.refused}
    for name in ("face.pts", "two_1.pts", "link.png", "labels_keypoints.json"):
        _count(name in refused)
        assert name in refused, report.summary()
    assert sorted(report.added) == ["face.png", "two.png"] and report.faces_imported == 1  # two_0.pts only
    assert not any("linked_dir" in name for name in report.added)  # symlinked folders are not walked


def _dataset(rows: list[dict], struct_image: bool):
    import datasets

    if struct_image:  # image given as {"bytes", "path"} without the Image feature: the path is all there is
        features = datasets.Features({"image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                      "image_name": datasets.Value("string"),
                                      "landmarks": datasets.Array2D((68, 2), "float64")})
    else:
        features = datasets.Features({"image": datasets.Image(), "image_name": datasets.Value("string"),
                                      "landmarks": datasets.Array2D((68, 2), "float64")})
    cols = {k: [r[k] for r in rows] for k in ("image", "image_name", "landmarks")}
    return datasets.Dataset.from_dict(cols, features=features)


def test_hf_rows_naming_paths(tmp_path: Path, outside) -> None:
    import datasets

    lm = face_points(1).tolist()
    rows = [{"image": {"bytes": None, "path": str(outside["photo"])}, "image_name": "abs.png", "landmarks": lm},
            {"image": {"bytes": None, "path": "/etc/passwd"}, "image_name": "passwd.png", "landmarks": lm},
            {"image": {"bytes": None, "path": "../secret/private.png"}, "image_name": "rel.png", "landmarks": lm},
            {"image": {"bytes": None, "path": "inside.png"}, "image_name": "inside.png", "landmarks": lm}]
    ds_dir = tmp_path / "dataset"
    ds_dir.mkdir()
    write_photo(ds_dir / "inside.png", 3)
    datasets.DatasetDict({"train": _dataset(rows, struct_image=True)}).save_to_disk(str(ds_dir))
    store = _new_store(tmp_path)
    report = import_source(store, ds_dir)  # the reported case: a dataset row pointing at any file
    refused = {name for name, _ in report.refused}
    for name in ("abs.png", "passwd.png", "rel.png"):
        _count(name in refused)
        assert name in refused, report.summary()
    assert report.added == ["inside.png"]  # a relative path inside the dataset folder is fine
    # in memory there is no dataset folder: path-only images are refused unless image_root says where
    report = import_hf(_new_store(tmp_path, "p2"), _dataset(rows[:1], struct_image=True))
    _count(bool(report.unreadable))
    assert report.unreadable and "image_root" in report.unreadable[0][1]
    report = import_hf(_new_store(tmp_path, "p3"), _dataset(rows[:1], struct_image=False),
                       image_root=tmp_path / "dataset")
    _count(bool(report.refused))
    assert report.refused


@pytest.mark.parametrize("case", ["split_dotdot", "split_abs", "data_file_dotdot", "data_file_abs", "symlinked_split",
                                  "empty_dict", "splits_not_list", "state_not_object"])
def test_saved_dataset_metadata_pointing_outside(tmp_path: Path, outside, case: str) -> None:
    import datasets

    src = tmp_path / "elsewhere"
    photo = str(write_photo(tmp_path / "decoy.png", 4))  # embedded in both datasets (reading it here is fine)
    datasets.DatasetDict({"train": _dataset([{"image": photo, "image_name": "x.png",
                                              "landmarks": face_points(1).tolist()}], struct_image=False)}
                         ).save_to_disk(str(src))
    ds = tmp_path / "dataset"
    datasets.DatasetDict({"train": _dataset([{"image": photo, "image_name": "y.png",
                                              "landmarks": face_points(2).tolist()}], struct_image=False)}
                         ).save_to_disk(str(ds))
    _WATCH.update(str(p) for p in src.rglob("*") if p.is_file())
    dd, state = ds / "dataset_dict.json", ds / "train" / "state.json"
    if case == "split_dotdot":
        dd.write_text(json.dumps({"splits": ["../elsewhere/train"]}))
    elif case == "split_abs":
        dd.write_text(json.dumps({"splits": [str(src / "train")]}))
    elif case in ("data_file_dotdot", "data_file_abs"):
        s = json.loads(state.read_text())
        target = src / "train" / s["_data_files"][0]["filename"]
        s["_data_files"][0]["filename"] = (os.path.relpath(target, ds / "train") if case == "data_file_dotdot"
                                           else str(target))
        state.write_text(json.dumps(s))
    elif case == "symlinked_split":
        import shutil

        shutil.rmtree(ds / "train")
        (ds / "train").symlink_to(src / "train", target_is_directory=True)
    elif case == "empty_dict":
        dd.write_text("{}")
    elif case == "splits_not_list":
        dd.write_text(json.dumps({"splits": "train"}))
    elif case == "state_not_object":
        state.write_text("[1, 2]")
    store = _new_store(tmp_path)
    with pytest.raises(FormatError) as info:
        import_source(store, ds)
    _count(True)
    assert str(ds) in str(info.value) or "dataset" in str(info.value)
    assert not store.list_images()
    _WATCH.difference_update(str(p) for p in src.rglob("*"))
