"""annotate.editor.bridge without a browser: the ops the page sends, the value it gets back, sessions and refusals."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from annotate.editor.bridge import EditorBridge, EditorSessions, OpError, parse_changes
from annotate.labeling import Annotator
from annotate.skeleton import OUTSIDE, VISIBLE
from annotate.store import Store


@pytest.fixture
def bridge(filled_store: Store) -> EditorBridge:
    return EditorBridge(Annotator(filled_store), max_side=100)


def opened(bridge: EditorBridge, user: str | None = "alice") -> tuple[dict, dict]:
    st = bridge.sessions.register(bridge.ann.new_state())
    st["editor_user"] = user
    bridge.ann.next_image(st, user)
    return st, bridge.value(st, user)


def op(st: dict, op_id: int, kind: str = "set", **extra) -> dict:
    return {"session": st["editor_session"], "id": op_id, "op": kind, "image_id": st["image_id"], "face": st["face"],
            "doc": st["editor_doc"], **extra}


def test_parse_changes_accepts_points_and_outside_and_refuses_junk() -> None:
    assert parse_changes([[3, 1.5, 2, 2], [4, None, None, 0]]) == [(3, 1.5, 2.0, 2), (4, None, None, 0)]
    for bad in ([], [[True, 1, 1, 2]], [[68, 1, 1, 2]], [[1, 1, 1, 2], [1, 2, 2, 2]], [[1, 1, 1, 3]],
                [[1, float("nan"), 1, 2]], [[1, None, None, 2]], [[1, 1, None, 0]], [[1, "1", 1, 2]],
                [[1, 1, 1, True]], [[1, 1, 1]], [[i, 1, 1, 2] for i in range(68)] + [[0, 1, 1, 2]], "x"):
        with pytest.raises(OpError):
            parse_changes(bad)


def test_value_sends_the_photo_once_downscaled(bridge: EditorBridge) -> None:
    st, v = opened(bridge)
    assert v["image"] is not None and v["session"] == st["editor_session"]
    jpeg = base64.b64decode(v["image"]["src"].split(",", 1)[1])
    assert Image.open(io.BytesIO(jpeg)).size == (100, 80)  # 200x160 photo, max side 100
    assert (v["width"], v["height"]) == (200, 160)  # coordinates stay in photo pixels
    assert bridge.value(st, "alice")["image"] is None  # the page has it
    assert bridge.handle(op(st, 1, "refresh"))["image"]["src"] == v["image"]["src"]  # asked again: sent again


def test_set_undo_redo_round_trip_to_the_store(bridge: EditorBridge) -> None:
    st, v = opened(bridge)
    store, image_id, rev = bridge.ann.store, st["image_id"], v["revision"]
    before = store.get_annotation(image_id).points.copy()
    out = bridge.handle(op(st, 1, changes=[[36, 50.25, 60.5, VISIBLE], [37, None, None, OUTSIDE]]))
    assert out["ack"] == 1 and out["revision"] == rev + 1 and out["refused"] == [] and out["can_undo"]
    saved = store.get_annotation(image_id)
    np.testing.assert_array_equal(saved.points[36], [50.25, 60.5])
    assert saved.visibility[37] == OUTSIDE and saved.updated_by == "alice"
    out = bridge.handle(op(st, 2, "undo"))
    np.testing.assert_array_equal(store.get_annotation(image_id).points[36], before[36])
    assert out["can_redo"] and out["points"][36] == list(before[36])
    bridge.handle(op(st, 3, "redo"))
    np.testing.assert_array_equal(store.get_annotation(image_id).points[36], [50.25, 60.5])
    # the same op again (a retried request) is not applied twice
    assert bridge.handle(op(st, 3, "redo"))["revision"] == store.get_annotation(image_id).revision


def test_refusals_roll_back_and_are_reported(bridge: EditorBridge) -> None:
    st, v = opened(bridge)
    store = bridge.ann.store
    rev = v["revision"]
    out = bridge.handle(op(st, 1, changes=[[5, 500.0, 10.0, VISIBLE]]))  # outside the 200x160 photo
    assert "⛔" in out["message"] and 1 in out["refused"] and out["revision"] == rev
    assert out["points"][5] != [500.0, 10.0]  # rolled back
    for bad_id, bad in ((2, {"changes": "nope"}), (3, {"op": "explode"}), (0, {})):
        msg = bridge.apply(st, {**op(st, bad_id), **bad}, "alice")
        assert msg.startswith("⛔ edit ignored")
    assert "expired" in bridge.handle({"session": "not-a-key", "id": 1, "op": "set"})["error"]
    assert store.get_annotation(st["image_id"]).revision == rev


def test_read_only_without_users_unless_open_access(filled_store: Store) -> None:
    locked = EditorBridge(Annotator(Store(filled_store.db_path, enforce_roles=True)))
    st, v = opened(locked, None)
    assert v["readonly"]
    rev = v["revision"]
    out = locked.handle(op(st, 1, changes=[[5, 50.0, 10.0, VISIBLE]]))
    assert "log in" in out["message"] and out["refused"] == [1]
    assert filled_store.get_annotation(st["image_id"]).revision == rev
    open_bridge = EditorBridge(Annotator(Store(filled_store.db_path, enforce_roles=None)))
    assert not opened(open_bridge, None)[1]["readonly"]


def test_conflict_then_reload(bridge: EditorBridge) -> None:
    st, v = opened(bridge)
    store = bridge.ann.store
    theirs = store.get_annotation(st["image_id"]).points.copy()
    theirs[10] = [20.0, 30.0]
    store.save(st["image_id"], theirs, None, base_revision=v["revision"], user="bob")
    out = bridge.handle(op(st, 1, changes=[[11, 40.0, 40.0, VISIBLE]]))
    assert out["conflict"] and "bob" in out["message"] and out["refused"] == [1]
    np.testing.assert_array_equal(store.get_annotation(st["image_id"]).points, theirs)  # nothing lost
    out = bridge.handle(op(st, 2, "reload"))
    assert not out["conflict"] and out["points"][10] == [20.0, 30.0]


def test_edit_sent_after_the_tab_moved_on_is_saved_to_its_own_face(bridge: EditorBridge) -> None:
    st, v = opened(bridge)
    store, first = bridge.ann.store, st["image_id"]
    late = op(st, 1, changes=[[8, 55.0, 66.0, VISIBLE]], revision=v["revision"],
              points=[list(p) for p in st["points"]], vis=list(st["vis"]))
    late["points"][8] = [55.0, 66.0]
    bridge.ann.next_image(st, "alice")
    bridge.value(st, "alice")
    assert st["image_id"] != first
    out = bridge.handle(late)
    assert "saved your last edit" in out["message"] and out["image_id"] == st["image_id"]
    np.testing.assert_array_equal(store.get_annotation(first).points[8], [55.0, 66.0])
    stale = {**late, "id": 2}  # same base revision again: someone (here: the edit above) saved since
    assert "not saved" in bridge.handle(stale)["message"]


def test_sessions_are_bounded_and_keys_are_secret() -> None:
    sessions = EditorSessions(size=2)
    a, b, c = ({"n": i} for i in range(3))
    for s in (a, b, c):
        assert sessions.register(s) is s
    assert sessions.get(a["editor_session"]) is None and sessions.get(c["editor_session"])[0] is c
    assert len(c["editor_session"]) == 32 and b["editor_session"] != c["editor_session"]
    sessions.drop(c)
    assert sessions.get(c["editor_session"]) is None
