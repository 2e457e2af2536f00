from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from annotate_helpers import face_points, write_photo

from annotate.exporter import export_project
from annotate.formats import (
    FaceLabel,
    FormatError,
    ImageLabels,
    read_coco,
    read_dlib_xml,
    read_pts,
    to_hf_dataset,
    write_coco,
    write_dlib_xml,
    write_pts,
)
from annotate.importer import import_folder, import_hf, import_source
from annotate.skeleton import OCCLUDED, OUTSIDE
from annotate.store import Store


def _dump(store: Store) -> dict:
    out = {}
    for im in store.list_images(order="id"):
        for a in store.get_annotations(im.id):
            out[(im.sha256, a.face)] = (a.points, a.visibility, a.box, im.split, im.name, a.meta)
    return out


def _same(a: dict, b: dict, *, box: bool = True, split: bool = True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
        np.testing.assert_array_equal(a[k][1], b[k][1])
        if box:
            np.testing.assert_array_equal(a[k][2], b[k][2])
        if split:
            assert a[k][3] == b[k][3]
        assert a[k][4] == b[k][4]


def test_pts_roundtrip_and_unknown_points(tmp_path: Path) -> None:
    pts = face_points(3)
    pts[5] = np.nan
    write_pts(tmp_path / "a.pts", pts)
    face = read_pts(tmp_path / "a.pts")
    np.testing.assert_array_equal(face.points, pts)  # exact: shortest float repr
    assert face.visibility[5] == OUTSIDE


@pytest.mark.parametrize("text,line,match", [
    ("version: 1\nn_points: 68\n{\n1 2\n", 4, "missing '}'"),
    ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 10 + "1 x\n", 14, "not a number"),
    ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "}\n", 71, "found 67 points"),
    ("version: 1\nn_points: 5\n{\n}\n", 1, "only the 68-point"),
    ("garbage\n", 1, "expected 'key: value'"),
])
def test_malformed_pts_names_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(FormatError, match=match) as exc:
        read_pts(path)
    assert exc.value.file == str(path) and exc.value.line == line
    assert str(exc.value).startswith(f"{path}:{line}:")


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<dataset>\n<images>\n  <image file='a.jpg'>\n    <box top='1' left='2' width='3' height='4'>\n"
                   "  </image>\n</images>\n</dataset>\n")
    with pytest.raises(FormatError) as exc:
        read_dlib_xml(bad)
    assert exc.value.line == 5 and "malformed XML" in str(exc.value)
    bad.write_text("<dataset>\n<images>\n  <image file='a.jpg'>\n    <box top='1' left='2' width='3' height='4'>\n"
                   "      <part name='99' x='1' y='1'/>\n    </box>\n  </image>\n</images>\n</dataset>\n")
    with pytest.raises(FormatError, match="part name") as exc:
        read_dlib_xml(bad)
    assert exc.value.line == 5
    bad.write_text("<dataset><images>\n<image file='a.jpg'>\n<box top='x' left='2' width='3' height='4'/>"
                   "</image></images></dataset>")
    with pytest.raises(FormatError, match="top='x'") as exc:
        read_dlib_xml(bad)
    assert exc.value.line == 3


def test_malformed_coco_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "images": [\n  {"id": 1, "file_name": "a.jpg"},\n ]\n}\n')
    with pytest.raises(FormatError, match="malformed JSON") as exc:
        read_coco(bad)
    assert exc.value.line == 4
    bad.write_text('{\n "images": [{"id": 1, "file_name": "a.jpg"}],\n "annotations": [\n'
                   '  {"id": 1, "image_id": 1, "keypoints": [1, 2, 2]}\n ]\n}\n')
    with pytest.raises(FormatError, match="204 numbers") as exc:
        read_coco(bad)
    assert exc.value.line == 4
    bad.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}],\n"annotations": [\n{"id": 1, "image_id": 7, '
                   '"keypoints": []}]}')
    with pytest.raises(FormatError, match="unknown image_id") as exc:
        read_coco(bad)
    assert exc.value.line == 3


def _labels_with_flags() -> list[ImageLabels]:
    pts = face_points(1)
    vis = np.full(68, 2, np.int8)
    vis[3], vis[40] = OCCLUDED, OUTSIDE
    pts[40] = np.nan
    return [ImageLabels("a/b.png", 200, 160, [FaceLabel(pts, vis, np.array([10.5, 20.0, 150.25, 140.0]))], "test")]


def test_coco_keeps_visibility_flags(tmp_path: Path) -> None:
    labels = _labels_with_flags()
    write_coco(tmp_path / "c.json", labels)
    back = read_coco(tmp_path / "c.json")
    f0, f1 = labels[0].faces[0], back[0].faces[0]
    np.testing.assert_array_equal(f0.points, f1.points)
    np.testing.assert_array_equal(f0.visibility, f1.visibility)
    np.testing.assert_array_equal(f0.box, f1.box)
    assert back[0].split == "test" and back[0].file == "a/b.png"


def test_dlib_xml_roundtrip(tmp_path: Path) -> None:
    pts = np.round(face_points(2))
    pts[7] = np.nan  # missing part
    labels = [ImageLabels("x.jpg", 200, 160, [FaceLabel(pts, np.where(np.isnan(pts[:, 0]), 0, 2).astype(np.int8),
                                                        np.array([10.0, 12.0, 180.0, 150.0]))])]
    write_dlib_xml(tmp_path / "d.xml", labels)
    back = read_dlib_xml(tmp_path / "d.xml")
    np.testing.assert_array_equal(back[0].faces[0].points, pts)
    np.testing.assert_array_equal(back[0].faces[0].box, labels[0].faces[0].box)


def test_hf_dataset_roundtrip_through_store(tmp_path: Path, store: Store) -> None:
    labels = _labels_with_flags()
    write_photo(tmp_path / "src" / "a" / "b.png", 0)
    ds = to_hf_dataset([(tmp_path / "src" / "a" / "b.png", labels[0])])
    assert set(ds) == {"test"} and ds["test"].num_rows == 1
    report = import_hf(store, ds, image_root=tmp_path / "src")  # path-only images: read inside image_root only
    assert report.ok and report.faces_imported == 1, report.summary()
    ann = store.get_annotations(store.list_images()[0].id)[0]
    np.testing.assert_array_equal(ann.points, labels[0].faces[0].points)
    np.testing.assert_array_equal(ann.visibility, labels[0].faces[0].visibility)
    assert store.list_images()[0].split == "test" and store.list_images()[0].name == "a/b.png"


@pytest.mark.parametrize("fmt", ["pts", "dlib", "coco", "hf"])
def test_store_roundtrip_synthetic(tmp_path: Path, filled_store: Store, fmt: str) -> None:
    """import -> export -> import -> export -> import: the two re-imports are identical, and equal the original."""
    first = export_project(filled_store, tmp_path / "e1", fmt, statuses="all")
    assert first.faces == 2
    s2 = Store(tmp_path / "p2", create=True)
    s2.create_project("default")
    r = import_source(s2, tmp_path / "e1")
    assert r.ok, r.summary()
    export_project(s2, tmp_path / "e2", fmt, statuses="all")
    s3 = Store(tmp_path / "p3", create=True)
    s3.create_project("default")
    import_source(s3, tmp_path / "e2")
    _same(_dump(s2), _dump(s3))
    if fmt == "dlib":  # integer coordinates only
        for k, v in _dump(filled_store).items():
            assert np.abs(_dump(s2)[k][0] - np.round(v[0])).max() == 0
    else:
        _same(_dump(filled_store), _dump(s2), box=fmt != "dlib", split=fmt != "pts")


@pytest.mark.parametrize("fmt", ["dlib", "coco", "pts", "hf"])
def test_roundtrip_is_exact_on_dlib_dev_set(shared_data: Path, tmp_path: Path, fmt: str) -> None:
    src = Store(tmp_path / "src", create=True)
    src.create_project("default")
    r = import_folder(src, shared_data / "dlib_faces")
    assert r.ok and r.faces_imported == 43, r.summary()
    export_project(src, tmp_path / "out", fmt, statuses="all")
    dst = Store(tmp_path / "dst", create=True)
    dst.create_project("default")
    r2 = import_source(dst, tmp_path / "out")
    assert r2.ok and r2.faces_imported == 43, r2.summary()
    # pts has no box or split; everything else is identical
    _same(_dump(src), _dump(dst), box=fmt != "pts", split=fmt != "pts")
