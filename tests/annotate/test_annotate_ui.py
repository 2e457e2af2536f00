from __future__ import annotations

import numpy as np
import pytest

from annotate.labeling import Annotator
from annotate.skeleton import OCCLUDED, OUTSIDE, VISIBLE
from annotate.store import Store


@pytest.fixture
def ann(filled_store: Store) -> Annotator:
    return Annotator(filled_store, display_size=400)


def opened(ann: Annotator, user: str | None = "alice") -> dict:
    st = ann.new_state()
    assert ann.next_image(st, user) == ""
    ann.render(st)
    return st


def test_render_mapping_is_exact_inverse(ann: Annotator) -> None:
    st = opened(ann)
    img = ann.render(st)
    assert img.shape[2] == 3 and max(img.shape[:2]) == 400
    pts = ann.points(st)
    back = np.array([ann.to_photo(st, *d) for d in ann.to_display(st, pts)])
    np.testing.assert_allclose(back, pts, atol=1e-9)
    st["zoom"] = "full"
    full = ann.render(st)
    assert full.shape[:2] == (320, 400)  # 200x160 photo scaled to 400 wide


def test_select_move_undo_redo_and_autosave(ann: Annotator) -> None:
    st = opened(ann)
    image_id, rev0 = st["image_id"], st["revision"]
    d = ann.to_display(st, ann.points(st))
    assert "selected 36" in ann.click(st, d[36][0] + 2, d[36][1] - 1, "alice")
    assert st["selected"] == 36
    target = next(d[36] + off for off in ([-25.0, 0.0], [0.0, 25.0], [-25.0, -25.0], [25.0, 25.0])
                  if np.linalg.norm(d - (d[36] + off), axis=1).min() > 15)
    msg = ann.click(st, *target, "alice")
    assert "saved revision" in msg and st["revision"] == rev0 + 1
    stored = ann.store.get_annotation(image_id)
    np.testing.assert_allclose(stored.points[36], ann.to_photo(st, *target))
    assert ann.store.history(image_id)[-1].user == "alice"
    moved = stored.points[36].copy()
    assert "undone" in ann.undo(st, "alice")
    np.testing.assert_allclose(ann.store.get_annotation(image_id).points[36], ann.points(st)[36])
    assert not np.allclose(ann.points(st)[36], moved)
    assert "redone" in ann.redo(st, "alice")
    np.testing.assert_allclose(ann.store.get_annotation(image_id).points[36], moved)
    assert ann.store.get_annotation(image_id).revision == rev0 + 3
    assert ann.undo(ann.new_state(), None) == "nothing to undo"


def test_pick_by_number_or_name_nudge_and_visibility(ann: Annotator) -> None:
    st = opened(ann)
    assert "selected 30" in ann.select(st, "30 nose_bridge_4")
    assert ann.select(st, "right_eye_1") and st["selected"] == 36
    assert ann.select(st, "8") and st["selected"] == 8
    assert "⛔" in ann.select(st, "nonsense_point")
    before = ann.points(st)[8].copy()
    ann.nudge(st, 1, 0, "alice")
    assert ann.points(st)[8][0] > before[0]
    for expected in (OCCLUDED, OUTSIDE, VISIBLE):
        ann.set_visibility(st, None, "alice")
        assert st["vis"][8] == expected
        assert ann.store.get_annotation(st["image_id"]).visibility[8] == expected
    ann.set_visibility(st, "occluded", "alice")
    assert ann.store.get_annotation(st["image_id"]).visibility[8] == OCCLUDED
    st["selected"] = 0
    assert "outside the image" in ann.move(st, 0, -50, 10, "alice")
    assert ann.step_point(st, -1) and st["selected"] == 67


def test_conflict_between_two_sessions_then_reload_and_undo(ann: Annotator) -> None:
    st_a, st_b = opened(ann, "alice"), ann.new_state()
    ann.open_image(st_b, st_a["image_id"])
    ann.render(st_b)
    st_a["selected"] = st_b["selected"] = 10
    ann.move(st_a, 10, 50.0, 50.0, "alice")
    msg = ann.move(st_b, 10, 60.0, 60.0, "bob")
    assert "conflict" in msg and "alice" in msg and st_b["conflict"]
    np.testing.assert_allclose(ann.store.get_annotation(st_a["image_id"]).points[10], [50, 50])  # no lost update
    assert "Undo" in ann.reload(st_b)
    np.testing.assert_allclose(ann.points(st_b)[10], [50, 50])
    ann.undo(st_b, "bob")  # re-apply bob's edit on top of alice's version, explicitly
    np.testing.assert_allclose(ann.store.get_annotation(st_a["image_id"]).points[10], [60, 60])


def test_auth_on_anonymous_cannot_write_and_labeler_cannot_approve(ann: Annotator) -> None:
    ann.store.add_user("lab", "pw123456", "labeler")
    ann.store.add_user("rev", "pw123456", "reviewer")
    st = opened(ann, None)
    rev = st["revision"]
    before = ann.points(st)[20].copy()
    msg = ann.move(st, 20, 30.0, 30.0, None)
    assert "log in" in msg
    np.testing.assert_array_equal(ann.points(st)[20], before)  # local edit rolled back
    assert ann.store.get_annotation(st["image_id"]).revision == rev
    assert "⛔" in ann.add_face(st, None)
    assert "saved" in ann.move(st, 20, 30.0, 30.0, "lab")
    image_id = st["image_id"]
    assert "marked done" in ann.set_status(st, "done", "lab", advance=False)
    assert "⛔" in ann.set_status(st, "approved", "lab")
    assert "⛔" in ann.set_status(st, "rejected", "rev")  # needs a comment
    assert "marked rejected" in ann.set_status(st, "rejected", "rev", "redo the jaw", advance=False)
    assert "redo the jaw" in ann.info_markdown(st)
    assert ann.store.get_image(image_id).status == "rejected"
    assert "rev" in ann.progress_markdown("rev")


def test_queue_navigation_skip_prev_done(ann: Annotator) -> None:
    st = opened(ann)
    first = st["image_id"]
    ann.next_image(st, "alice")
    second = st["image_id"]
    assert second != first
    ann.prev_image(st)
    assert st["image_id"] == first
    ann.next_image(st, "alice", skip=True)
    ann.set_status(st, "done", "alice")
    assert st["image_id"] not in (first,)
    p = ann.store.progress()
    assert p["done"] == 1
    assert "1 of 4 done" in ann.progress_markdown()


def test_add_and_delete_face(ann: Annotator) -> None:
    st = opened(ann)
    n = len(st["faces"])
    assert "added face" in ann.add_face(st, "alice")
    assert len(st["faces"]) == n + 1
    assert len(ann.store.get_annotations(st["image_id"])) == n + 1
    assert "deleted" in ann.delete_face(st, "alice")
    assert len(ann.store.get_annotations(st["image_id"])) == n
    assert any(h.deleted for h in ann.store.history(st["image_id"]))


def test_gradio_blocks_build_and_mount(filled_store: Store) -> None:
    gr = pytest.importorskip("gradio")
    from annotate.ui import build_annotation_tabs, create_app, launch_kwargs, shortcut_js

    demo = create_app(filled_store)
    config = demo.get_config_file()
    assert any(c.get("props", {}).get("elem_id") == "ann-editor" for c in config["components"])
    with gr.Blocks() as outer:
        with gr.Tabs():
            with gr.Tab("Reconstruct"):
                gr.Markdown("other tab")
            ann = build_annotation_tabs(str(filled_store.db_path))
    assert ann.project.name == "default" and len(outer.fns) > 20
    assert launch_kwargs(filled_store) == {}
    filled_store.add_user("lab", "pw123456", "labeler")
    import asyncio
    import inspect

    auth = launch_kwargs(filled_store)["auth"]
    assert inspect.iscoroutinefunction(auth)  # Gradio awaits it only then (else a coroutine is truthy: any password)
    assert asyncio.run(auth("lab", "pw123456")) and not asyncio.run(auth("lab", "nope"))
    assert "ann-next" in shortcut_js()
