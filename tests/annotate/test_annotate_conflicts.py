"""Several labelers editing the same face through the Annotate tab's own handlers (the Gradio events of its buttons
and the landmark editor's server function, exactly what the browser calls), in conflict: nothing anyone saved may
be lost, and no save may put back a stale copy of a point someone else has moved since (the Reload -> Undo bug)."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest

from annotate.skeleton import OCCLUDED, OUTSIDE, VISIBLE
from annotate.store import Store
from tests.security_counts import record

gr = pytest.importorskip("gradio")


class UI:
    """The Annotate tab of create_app(store), driven handler by handler; edits go through the editor's server
    function as the page sends them (one op per gesture)."""

    def __init__(self, store: Store) -> None:
        from annotate.ui import create_app

        self.demo = create_app(store, display_size=320)
        self.fns: dict[tuple[str, str], object] = {}
        for bf in self.demo.fns.values():
            for block_id, event in bf.targets:
                block = self.demo.blocks.get(block_id)
                for key in (getattr(block, "elem_id", None), getattr(block, "label", None),
                            getattr(block, "value", None) if isinstance(block, gr.Button) else None):
                    if isinstance(key, str):
                        self.fns.setdefault((key, event), bf.fn)
            if getattr(bf.fn, "__name__", "") == "on_load":
                self.fns[("page", "load")] = bf.fn
        editor = next(b for b in self.demo.blocks.values() if getattr(b, "elem_id", None) == "ann-editor")
        self.apply = editor.lmk_apply
        self.ids = itertools.count(1)

    def session(self, user: str) -> SimpleNamespace:
        request = SimpleNamespace(username=user)
        out = self.fns[("page", "load")](None, None, request)
        return SimpleNamespace(user=user, request=request, state=out[0], last="")

    def _run(self, s: SimpleNamespace, key: tuple[str, str], *value) -> str:
        out = self.fns[key](s.state, *value, None, s.request)
        s.state, s.last = out[0], out[3]
        return s.last

    def press(self, s, elem_id: str) -> str:
        return self._run(s, (elem_id, "click"))

    def goto(self, s, image_id: int) -> str:
        return self._run(s, ("Open", "click"), image_id)

    def op(self, s, kind: str, changes: list | None = None) -> str:
        st = s.state
        op = {"session": st["editor_session"], "id": next(self.ids), "op": kind, "image_id": st["image_id"],
              "face": st["face"], "doc": st["editor_doc"]}
        if changes is not None:
            op["changes"] = changes
        s.last = self.apply(op)["message"]
        return s.last


def move(ui: UI, s, point: int, rng: random.Random, image_wh: tuple[int, int]) -> str:
    """Drag `point` somewhere in the photo (one editor op)."""
    x, y = rng.uniform(5, image_wh[0] - 5), rng.uniform(5, image_wh[1] - 5)
    return ui.op(s, "set", [[point, x, y, VISIBLE]])


def nudge(ui: UI, s, point: int, rng: random.Random) -> str:
    x, y = s.state["points"][point]
    if x is None:
        return ""
    dx, dy = rng.choice([(-1, 0), (1, 0), (0, -1), (0, 1)])
    return ui.op(s, "set", [[point, x + dx, y + dy, s.state["vis"][point] or VISIBLE]])


def cycle_visibility(ui: UI, s, point: int) -> str:
    new = {VISIBLE: OCCLUDED, OCCLUDED: OUTSIDE, OUTSIDE: VISIBLE}[s.state["vis"][point]]
    x, y = s.state["points"][point]
    if x is None and new != OUTSIDE:
        return ""
    return ui.op(s, "set", [[point, x, y, new]])


def _value(points, vis, i: int) -> tuple:
    x, y = points[i]
    return (None if x is None or not np.isfinite(x) else float(x), None if y is None or not np.isfinite(y)
            else float(y), int(vis[i]))


def audit(store: Store, image_id: int, explicit: dict[str, set], acknowledged: list[tuple[str, int, dict]]
          ) -> tuple[int, int]:
    """(reverted, lost). reverted: a save that changed a point last changed by someone else to a value the saver
    never chose for it. lost: a save reported to a labeler that the history does not hold as shown."""
    rows = store.history(image_id, 0)
    by_rev = {h.revision: h for h in rows}
    reverted, last_changer = 0, {}
    prev = None
    for h in rows:
        if prev is not None:
            for i in range(68):
                before, after = _value(prev.points, prev.visibility, i), _value(h.points, h.visibility, i)
                if before == after:
                    continue
                other = last_changer.get(i)
                if other is not None and other != h.user and (i, after) not in explicit.get(h.user, set()):
                    reverted += 1
                last_changer[i] = h.user
        prev = h
    lost = 0
    for user, revision, snap in acknowledged:
        h = by_rev.get(revision)
        if h is None or h.user != user or any(_value(h.points, h.visibility, i) != _value(snap["points"],
                                                                                         snap["vis"], i)
                                              for i in range(68)):
            lost += 1
    return reverted, lost


@pytest.fixture
def labelled(filled_store: Store) -> tuple[Store, int, tuple[int, int]]:
    rec = next(r for r in filled_store.list_images(order="id") if filled_store.get_annotations(r.id))
    return filled_store, rec.id, (rec.width, rec.height)


def test_reload_then_undo_keeps_the_other_labelers_save(labelled) -> None:
    """The reported case: bob moves point 30, alice's move of point 10 conflicts, alice reloads and undoes."""
    store, image_id, wh = labelled
    ui, rng = UI(store), random.Random(0)
    alice, bob = ui.session("alice"), ui.session("bob")
    for s in (alice, bob):
        ui.goto(s, image_id)
    assert "saved revision" in move(ui, bob, 30, rng, wh)
    bob_30 = store.get_annotation(image_id).points[30].copy()
    msg = move(ui, alice, 10, rng, wh)
    assert "conflict" in msg and "bob" in msg
    alice_10 = np.array(alice.state["points"][10], float)
    msg = ui.press(alice, "ann-reload")
    assert "Undo" in msg and "10" in msg and "⚠" not in msg
    np.testing.assert_array_equal(np.array(alice.state["points"][30], float), bob_30)  # sees bob's version
    assert "saved revision" in ui.op(alice, "undo")
    final = store.get_annotation(image_id)
    np.testing.assert_array_equal(final.points[30], bob_30)  # bob's save kept
    np.testing.assert_array_equal(final.points[10], alice_10)  # alice's edit re-applied
    others = [i for i in range(68) if i not in (10, 30)]
    np.testing.assert_array_equal(final.points[others], store.history(image_id, 0)[0].points[others])


def test_same_point_moved_by_both_is_flagged(labelled) -> None:
    store, image_id, wh = labelled
    ui, rng = UI(store), random.Random(1)
    alice, bob = ui.session("alice"), ui.session("bob")
    for s in (alice, bob):
        ui.goto(s, image_id)
    move(ui, bob, 12, rng, wh)
    assert "conflict" in move(ui, alice, 12, rng, wh)
    assert "⚠" in ui.press(alice, "ann-reload")  # told before Undo replaces bob's position of point 12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_conflicting_sessions_lose_and_revert_nothing(labelled, seed: int) -> None:
    store, image_id, wh = labelled
    ui, rng = UI(store), random.Random(seed)
    users = [ui.session(name) for name in ("alice", "bob", "carol")]
    for s in users:
        ui.goto(s, image_id)
    explicit: dict[str, set] = {s.user: set() for s in users}
    acknowledged: list[tuple[str, int, dict]] = []
    conflicts = 0
    for _ in range(150):
        s = rng.choice(users)
        action = rng.choices(["move", "undo", "redo", "reload", "nudge", "vis"], [5, 2, 1, 2, 1, 1])[0]
        point = rng.randrange(68)
        if action == "move":
            msg = move(ui, s, point, rng, wh)
        elif action == "nudge":
            msg = nudge(ui, s, point, rng)
        elif action == "vis":
            msg = cycle_visibility(ui, s, point)
        elif action == "reload":
            msg = ui.press(s, "ann-reload") if rng.random() < 0.5 else ui.op(s, "reload")
        else:
            msg = ui.op(s, action)
        conflicts += "conflict" in msg
        if action in ("move", "nudge", "vis"):
            # what the labeler chose for that point (kept even when the save was refused: a rebased Undo
            # re-applies exactly this choice)
            explicit[s.user].add((point, _value(s.state["points"], s.state["vis"], point)))
        if "saved revision" in msg and "conflict" not in msg:
            acknowledged.append((s.user, s.state["revision"], {"points": [list(p) for p in s.state["points"]],
                                                                 "vis": list(s.state["vis"])}))
    reverted, lost = audit(store, image_id, explicit, acknowledged)
    record(f"labeling_conflicts_seed{seed}", actions=150, saves=len(acknowledged), conflicts=conflicts,
           reverted_saves=reverted, lost_saves=lost)
    assert conflicts > 5 and len(acknowledged) > 20  # the test did exercise conflicts
    assert reverted == 0 and lost == 0
