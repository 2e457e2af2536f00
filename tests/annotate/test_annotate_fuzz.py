"""Wrong JSON types against the COCO and Hugging Face readers, generated with hypothesis.

Each case takes a valid file (or dataset row) and puts a value of a wrong type into one field (or garbles the
whole document). The reader must refuse it with a FormatError naming the file and line (or row): any other
exception is a traceback for the user, and returning normally is a silent acceptance. A sample of the cases also
goes through a whole folder import next to good files, which must still import."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotate_helpers import face_points, write_photo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotate.formats import FormatError, coco_category, hf_rows_to_labels, read_coco, write_pts
from annotate.importer import import_folder
from annotate.store import Store
from tests.security_counts import record

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                database=None)
TALLY: dict[str, dict[str, int]] = {}


def tally(name: str, outcome: str) -> None:
    counts = TALLY.setdefault(name, {"cases": 0, "refused": 0, "tracebacks": 0, "silent_acceptances": 0})
    counts["cases"] += 1
    counts[outcome] += 1
    record(f"fuzz_{name}", **counts)


def valid_coco() -> dict:
    kp = []
    for x, y in face_points(0).tolist():
        kp += [x, y, 2]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": list(kp), "bbox": [10, 10, 150, 120],
             "face": 0, "num_keypoints": 68, "area": 1.0, "iscrowd": 0} for i in range(2)]
    images = [{"id": i + 1, "file_name": f"p{i}.png", "width": 200, "height": 160, "split": "train"}
              for i in range(2)]
    return {"images": images, "annotations": anns, "categories": [coco_category()]}


# ------------------------------------------------------------------------------------------------ wrong values
anything = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) |
                        st.text(max_size=8), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4),
                                                                                                   c, max_size=3),
                        max_leaves=6)
non_list = anything.filter(lambda v: not isinstance(v, list))
non_object = anything.filter(lambda v: not isinstance(v, dict))
not_id = anything.filter(lambda v: not ((isinstance(v, int) and not isinstance(v, bool)) or
                                        (isinstance(v, str) and v and "\x00" not in v)))
not_name = anything.filter(lambda v: not (isinstance(v, str) and v))
not_size = anything.filter(lambda v: v is not None and not (isinstance(v, int) and not isinstance(v, bool) and
                                                            0 < v <= 10**6))
not_number = anything.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float)) or
                             (isinstance(v, float) and not math.isfinite(v)))
not_split = anything.filter(lambda v: v is not None and not (isinstance(v, str) and v[:1].isalnum() and
                                                             all(c.isascii() and (c.isalnum() or c in "_.-")
                                                                 for c in v)))
not_face = anything.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000))
bad_bbox = anything.filter(lambda v: v is not None and not (isinstance(v, list) and len(v) == 4 and all(
    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v) and v[2] >= 0
    and v[3] >= 0))

# (where, strategy for a wrong value); "keypoints[i]" puts the value into one keypoint slot
COCO_SLOTS: list[tuple[str, st.SearchStrategy]] = [
    ("$", non_object), ("images", non_list), ("annotations", non_list.filter(lambda v: v is not None)),
    ("categories", non_list.filter(lambda v: v is not None)),
    ("images[0]", non_object), ("images[1].id", not_id), ("images[0].file_name", not_name),
    ("images[0].width", not_size), ("images[1].height", not_size), ("images[0].split", not_split),
    ("annotations[0]", non_object), ("annotations[1].image_id", not_id),
    ("annotations[0].category_id", not_id.filter(lambda v: v is not None)),
    ("annotations[0].id", not_id), ("annotations[0].keypoints", anything),
    ("annotations[1].keypoints[i]", not_number), ("annotations[0].keypoints[v]", anything.filter(
        lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool) and v in (0, 1, 2)))),
    ("annotations[0].bbox", bad_bbox), ("annotations[1].face", not_face),
    ("categories[0]", non_object), ("categories[0].id", not_id),
    ("categories[0].keypoints", anything.filter(lambda v: v is not None and not (
        isinstance(v, list) and len(v) == 68 and all(isinstance(k, str) for k in v)))),
]


def mutate(doc: dict, where: str, value: Any, index: int) -> Any:
    if where == "$":
        return value
    doc = copy.deepcopy(doc)
    head, _, field = where.partition(".")
    name, _, pos = head.partition("[")
    target = doc[name] if not pos else doc[name][int(pos.rstrip("]"))]
    if not field:
        if pos:
            doc[name][int(pos.rstrip("]"))] = value
        else:
            doc[name] = value
    elif field == "keypoints[i]":
        target["keypoints"][index % 204] = value
    elif field == "keypoints[v]":
        target["keypoints"][3 * (index % 68) + 2] = value
    elif field == "keypoints" and isinstance(value, list) and len(value) == 204 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        target["keypoints"] = [True] * 204  # (a valid-looking list would not be a wrong type)
    else:
        target[field] = value
    return doc


def check_coco(text: str, name: str, folder: Path, must_refuse: bool) -> str:
    path = folder / "labels.json"
    path.write_text(text)
    try:
        read_coco(path)
    except FormatError as exc:
        assert str(path) in str(exc)
        return "refused"
    except Exception:  # noqa: BLE001 - counted: a traceback the user would see
        return "tracebacks"
    return "silent_acceptances" if must_refuse else "refused"


def test_valid_coco_is_accepted(tmp_path) -> None:
    (tmp_path / "labels.json").write_text(json.dumps(valid_coco()))
    assert [len(i.faces) for i in read_coco(tmp_path / "labels.json")] == [1, 1]


@FUZZ
@given(slot=st.sampled_from(range(len(COCO_SLOTS))), data=st.data(), index=st.integers(0, 10_000))
def test_coco_wrong_types_are_refused(slot: int, data, index: int) -> None:
    where, strategy = COCO_SLOTS[slot]
    value = data.draw(strategy)
    doc = mutate(valid_coco(), where, value, index)
    with tempfile.TemporaryDirectory() as d:
        outcome = check_coco(json.dumps(doc), where, Path(d), must_refuse=True)
    tally("coco_wrong_types", outcome)
    assert outcome == "refused", (where, value)


@FUZZ
@given(doc=anything)
def test_coco_any_json_never_crashes(doc) -> None:
    with tempfile.TemporaryDirectory() as d:
        outcome = check_coco(json.dumps(doc), "$", Path(d), must_refuse=False)
    tally("coco_random_json", outcome)
    assert outcome == "refused"


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"images": ' + "[" * 50_000 + "]" * 50_000 + "}",
                                  '{"images": [{"id": 1, "file_name": "\\u0000"}]}',
                                  '{"images": [{"id": 1, "file_name": "\\ud800.png"}]}', "\ufeff{", "\xff\xfe",
                                  '{"images": [], "annotations": [{"image_id": 1e999}]}'])
def test_coco_hostile_text_is_refused(tmp_path, text: str) -> None:
    outcome = check_coco(text, "$", tmp_path, must_refuse=True)
    tally("coco_hostile_text", outcome)
    assert outcome == "refused"


# ------------------------------------------------------------------------------------------------ HF rows
def valid_row() -> dict:
    return {"image": {"bytes": b"x", "path": None}, "image_name": "a/b.png", "face": 0,
            "landmarks": face_points(0).tolist(), "visibility": [2] * 68, "box": [1.0, 2.0, 100.0, 120.0],
            "width": 200, "height": 160, "split": "train"}


not_matrix = anything.filter(lambda v: v is not None)
HF_SLOTS: list[tuple[str, st.SearchStrategy]] = [
    ("row", non_object), ("image_name", not_name.filter(lambda v: v is not None)),
    ("face", not_face.filter(lambda v: v is not None)), ("landmarks", not_matrix),
    ("landmarks[i]", not_number.filter(lambda v: not (isinstance(v, float) and math.isnan(v)))),
    ("visibility", not_matrix), ("visibility[i]", anything.filter(
        lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool) and v in (0, 1, 2)))),
    ("box", not_matrix.filter(lambda v: not (isinstance(v, list) and len(v) == 4 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and not (isinstance(x, float) and math.isinf(x))
        for x in v)))),
    ("width", not_size.filter(lambda v: v != 0)), ("height", not_size.filter(lambda v: v != 0)),
    ("split", not_split),
]


def mutate_row(where: str, value: Any, index: int) -> Any:
    row = valid_row()
    if where == "row":
        return value
    if where == "landmarks[i]":
        row["landmarks"][index % 68][index % 2] = value
    elif where == "visibility[i]":
        row["visibility"][index % 68] = value
    elif where in ("landmarks", "visibility") and isinstance(value, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value) and len(value) in (68, 136):
        row[where] = [True] * len(value)
    else:
        row[where] = value
    return row


def test_valid_row_is_accepted() -> None:
    [(row, labels)] = hf_rows_to_labels([valid_row()], "train")
    assert len(labels.faces) == 1 and labels.file == "a/b.png"


@FUZZ
@given(slot=st.sampled_from(range(len(HF_SLOTS))), data=st.data(), index=st.integers(0, 10_000))
def test_hf_rows_wrong_types_are_refused(slot: int, data, index: int) -> None:
    where, strategy = HF_SLOTS[slot]
    value = data.draw(strategy)
    row = mutate_row(where, value, index)
    errors: list[str] = []
    try:
        groups = hf_rows_to_labels([valid_row(), row], "train", errors=errors)
        outcome = "refused" if errors and "row 1" in errors[0] else "silent_acceptances"
        assert len(groups) >= 1 and len(groups[0][1].faces) == 1  # the good row still comes through
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001
        outcome = "tracebacks"
    tally("hf_wrong_types", outcome)
    assert outcome == "refused", (where, value, errors)


# ------------------------------------------------------------------------------------------------ whole imports
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)
@given(slot=st.sampled_from(range(1, len(COCO_SLOTS))), data=st.data(), index=st.integers(0, 10_000))
def test_bad_coco_file_does_not_stop_the_folder(slot: int, data, index: int) -> None:
    """A broken COCO file is reported with its name; the good COCO file and the .pts photo beside it import.
    (Slot 0 replaces the whole document: JSON that does not look like COCO is not a label file and is skipped.)"""
    where, strategy = COCO_SLOTS[slot]
    value = data.draw(strategy)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        folder = root / "photos"
        for i in range(2):
            write_photo(folder / f"p{i}.png", i)
        good = valid_coco()
        good["images"], good["annotations"] = good["images"][:1], good["annotations"][:1]
        (folder / "good_keypoints.json").write_text(json.dumps(good))
        (folder / "sub").mkdir()
        write_photo(folder / "sub" / "q.png", 5)
        write_pts(folder / "sub" / "q.pts", face_points(5))
        bad = mutate(valid_coco(), where, value, index)
        (folder / "sub" / "bad_keypoints.json").write_text(json.dumps(bad))
        store = Store(root / "project", create=True)
        store.create_project("default")
        try:
            report = import_folder(store, folder)
            named = any("bad_keypoints.json" in e for e in report.errors)
            ok = len(report.added) == 3 and report.faces_imported >= 2
            outcome = "refused" if named and ok else "silent_acceptances"
        except Exception:  # noqa: BLE001
            outcome = "tracebacks"
        finally:
            store.close()
    tally("import_folder_with_bad_coco", outcome)
    assert outcome == "refused", (where, value)


def test_booleans_are_not_coordinates(store: Store, tmp_path) -> None:
    from annotate.store import ValidationError

    write_photo(tmp_path / "p.png", 0)
    report = import_folder(store, tmp_path)
    image_id = store.list_images()[0].id
    for points in (np.ones((68, 2), bool), [[True, False]] * 68, [[1.0, "2"]] * 68):
        with pytest.raises(ValidationError, match="numbers"):
            store.save(image_id, points, None, base_revision=0, user="u")
    with pytest.raises(ValidationError, match="visibility"):
        store.save(image_id, face_points(0), [True] * 68, base_revision=0, user="u")
    assert report.ok
