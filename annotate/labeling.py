"""Labeling and review logic behind the Gradio tabs, free of Gradio so it is fast to import and test.

:class:`Annotator` works on a per-session ``state`` dict (JSON-able, kept in ``gr.State`` by :mod:`annotate.ui`),
so nothing is shared between users except the store and a cache of decoded photos.

Editing model: click near a point to select it (or pick it by number/name), click elsewhere to move it there; every
change is saved at once (autosave) as a new revision of that face. If someone else saved the face meanwhile, the save
is refused with a conflict message; *Reload* loads their version and keeps your change (only the points you
changed) one *Undo* away.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from annotate.prelabel import get_prelabeller
from annotate.skeleton import (
    EDGES,
    N_POINTS,
    OCCLUDED,
    OUTSIDE,
    VISIBILITY_CODES,
    VISIBILITY_NAMES,
    VISIBLE,
    colour_of,
    parse_point_ref,
    point_label,
    template_face,
)
from annotate.store import ConflictError, PermissionDenied, Store, StoreError, ValidationError

LABEL_QUEUE = ("todo", "in_progress", "rejected")
REVIEW_QUEUE = ("done", "needs_review")
QUEUES = {
    "to label (todo, in progress, rejected)": LABEL_QUEUE,
    "to review (done, needs review)": REVIEW_QUEUE,
    "approved": ("approved",),
    "all": (),
}
SELECT_RADIUS = 12.0  # display pixels: a click this close to a point selects it
UNDO_LIMIT = 200

class _ImageCache:
    """Decoded photos shared by sessions (read-only pixels, no user state)."""

    def __init__(self, size: int = 8):
        self.size, self._data, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, store: Store, image_id: int) -> tuple[np.ndarray, float]:
        with self._lock:
            if image_id in self._data:
                self._data.move_to_end(image_id)
                return self._data[image_id]
        rec = store.get_image(image_id)
        path = store.image_path(rec)
        try:
            from msma.image_io import load_image_with_scale

            loaded = load_image_with_scale(str(path), max_side=4096)
            value = (loaded.image, loaded.scale)
        except ImportError:  # pragma: no cover
            from PIL import Image, ImageOps

            with Image.open(path) as im:
                value = (np.asarray(ImageOps.exif_transpose(im).convert("RGB")), 1.0)
        with self._lock:
            self._data[image_id] = value
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value


def _nan_list(points: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else float(v) for v in p] for p in np.asarray(points).tolist()]


def _point(snapshot: dict, i: int) -> tuple:
    x, y = snapshot["points"][i]
    return (None if x is None else float(x), None if y is None else float(y), int(snapshot["vis"][i]))


def _arr(points: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in p] for p in points], dtype=np.float64).reshape(N_POINTS, 2)


class Annotator:
    """Labeling / review logic. ``state`` is a dict owned by one browser session."""

    def __init__(self, store: Store | str, project: Any = None, prelabeller: Any = None, display_size: int = 720):
        self.store = store if isinstance(store, Store) else Store(store)
        self.project = self.store.get_project(project)
        self.prelabeller_spec = prelabeller
        self._prelabeller = None
        self.display_size = display_size
        self.cache = _ImageCache()

    # ------------------------------------------------------------------ state
    def new_state(self, queue: tuple[str, ...] = LABEL_QUEUE) -> dict:
        return {"image_id": None, "face": 0, "faces": [], "points": _nan_list(np.full((N_POINTS, 2), np.nan)),
                "vis": [OUTSIDE] * N_POINTS, "box": None, "revision": 0, "selected": None, "undo": [], "redo": [],
                "view": None, "visited": [], "skipped": [], "queue": list(queue), "order": "queue",
                "conflict": False, "message": "", "show_numbers": False, "zoom": "face", "margin": 0.35,
                "auto_advance": False, "user": None}

    @staticmethod
    def points(state: dict) -> np.ndarray:
        return _arr(state["points"])

    def _user(self, state: dict, user: str | None) -> str | None:
        state["user"] = user or None
        return state["user"]

    def open_image(self, state: dict, image_id: int | None, face: int | None = None, *,
                   remember: bool = True) -> dict:
        if image_id is None:
            state.update(image_id=None, faces=[], revision=0, selected=None, box=None, conflict=False)
            state["points"] = _nan_list(np.full((N_POINTS, 2), np.nan))
            state["vis"] = [OUTSIDE] * N_POINTS
            return state
        image_id = int(image_id)
        rec = self.store.get_image(image_id)
        anns = self.store.get_annotations(image_id)
        state["faces"] = [a.face for a in anns]
        if face is None or face not in state["faces"]:
            face = state["faces"][0] if state["faces"] else self.store.next_face_index(image_id)
        ann = next((a for a in anns if a.face == face), None)
        if remember and state["image_id"] is not None and state["image_id"] != image_id:
            state["visited"].append(state["image_id"])
        state.update(image_id=rec.id, face=int(face), conflict=False)
        if ann is None:
            stored = self.store.get_annotation(image_id, face)  # a deleted face keeps its revision number
            state.update(points=_nan_list(np.full((N_POINTS, 2), np.nan)), vis=[OUTSIDE] * N_POINTS, box=None,
                         revision=stored.revision if stored else 0)
        else:
            state.update(points=_nan_list(ann.points), vis=[int(v) for v in ann.visibility],
                         box=None if ann.box is None else [float(v) for v in ann.box], revision=ann.revision)
        if state["selected"] is None:
            state["selected"] = 0
        state["undo"], state["redo"] = [], []
        return state

    # ------------------------------------------------------------------ saving
    def _snapshot(self, state: dict) -> dict:
        return {"points": [list(p) for p in state["points"]], "vis": list(state["vis"])}

    def _push_undo(self, state: dict) -> None:
        state["undo"].append(self._snapshot(state))
        del state["undo"][:-UNDO_LIMIT]
        state["redo"] = []

    def save(self, state: dict, user: str | None) -> str:
        """Autosave the current face; returns a message (conflicts and refusals are messages, not exceptions)."""
        if state["image_id"] is None:
            return "no image open"
        user = self._user(state, user)
        try:
            ann = self.store.save(state["image_id"], self.points(state), state["vis"],
                                  base_revision=state["revision"], user=user, face=state["face"],
                                  box=None, source="manual")
        except ConflictError as exc:
            state["conflict"] = True
            return f"⚠️ {exc}"
        except PermissionDenied as exc:
            return f"⛔ {exc}"
        except ValidationError as exc:
            return f"⛔ not saved: {exc}"
        state["revision"], state["conflict"] = ann.revision, False
        state["box"] = None if ann.box is None else [float(v) for v in ann.box]
        if state["face"] not in state["faces"]:
            state["faces"] = sorted(state["faces"] + [state["face"]])
        return f"saved revision {ann.revision}"

    def _edit(self, state: dict, user: str | None, change) -> str:
        if state["image_id"] is None:
            return "no image open"
        before = self._snapshot(state)
        change()
        if self._snapshot(state) == before:
            return ""
        state["undo"].append(before)
        del state["undo"][:-UNDO_LIMIT]
        state["redo"] = []
        msg = self.save(state, user)
        if msg.startswith("⛔"):  # refused: roll back the local edit
            state["points"], state["vis"] = before["points"], before["vis"]
            state["undo"].pop()
        return msg

    def reload(self, state: dict) -> str:
        """Load the stored version. After a conflict, the edit that was refused stays one *Undo* away, rebased: only
        the points this session changed since the revision it started from are re-applied on top of the stored
        version, so Undo never puts back the stale copy of points someone else has moved meanwhile."""
        if state["image_id"] is None:
            return "no image open"
        local = self._snapshot(state)
        conflict, base_revision = state["conflict"], state["revision"]
        selected = state["selected"]
        self.open_image(state, state["image_id"], state["face"], remember=False)
        state["selected"] = selected
        if not conflict:
            return "reloaded"
        base = self._stored_snapshot(state["image_id"], state["face"], base_revision)
        stored = self._snapshot(state)
        mine = [i for i in range(N_POINTS) if _point(local, i) != _point(base, i)]
        if not mine:
            return "reloaded the stored version (you had no unsaved change)"
        rebased = self._snapshot(state)
        for i in mine:
            rebased["points"][i], rebased["vis"][i] = list(local["points"][i]), local["vis"][i]
        state["undo"], state["redo"] = [rebased], []
        both = [i for i in mine if _point(stored, i) != _point(base, i) and _point(stored, i) != _point(local, i)]
        names = ", ".join(str(i) for i in mine[:12]) + (" ..." if len(mine) > 12 else "")
        msg = (f"reloaded the stored version; press Undo to re-apply your change of point(s) {names} on top of it "
               "(the other points stay as saved)")
        if both:
            msg += (f". ⚠️ point(s) {', '.join(str(i) for i in both)} were also moved by the other save: "
                    "Undo would replace their position with yours")
        return msg

    def _stored_snapshot(self, image_id: int, face: int, revision: int) -> dict:
        """The points of one stored revision (all unknown for revision 0: the face did not exist yet)."""
        if revision > 0:
            for h in self.store.history(image_id, face):
                if h.revision == revision:
                    return {"points": _nan_list(h.points), "vis": [int(v) for v in h.visibility]}
        return {"points": _nan_list(np.full((N_POINTS, 2), np.nan)), "vis": [OUTSIDE] * N_POINTS}

    # ------------------------------------------------------------------ editing
    def to_photo(self, state: dict, u: float, v: float) -> tuple[float, float]:
        view = state["view"] or {"a": 1.0, "bx": 0.0, "by": 0.0}
        return (u - view["bx"]) / view["a"], (v - view["by"]) / view["a"]

    def to_display(self, state: dict, pts: np.ndarray) -> np.ndarray:
        view = state["view"] or {"a": 1.0, "bx": 0.0, "by": 0.0}
        return pts * view["a"] + np.array([view["bx"], view["by"]])

    def click(self, state: dict, u: float, v: float, user: str | None) -> str:
        """A click at display pixel (u, v): select the nearest point if close, else move the selected point."""
        if state["image_id"] is None:
            return "no image open"
        disp = self.to_display(state, self.points(state))
        dist = np.linalg.norm(disp - np.array([u, v]), axis=1)
        dist[~np.isfinite(dist)] = np.inf
        near = int(np.argmin(dist)) if np.isfinite(dist).any() else None
        sel = state["selected"]
        if near is not None and dist[near] <= SELECT_RADIUS and near != sel:
            state["selected"] = near
            return f"selected {point_label(near)}"
        if sel is None:
            return "select a point first (click near it or pick it in the list)"
        x, y = self.to_photo(state, u, v)
        return self.move(state, sel, x, y, user)

    def move(self, state: dict, index: int, x: float, y: float, user: str | None) -> str:
        rec = self.store.get_image(state["image_id"])
        if not (0 <= x <= rec.width and 0 <= y <= rec.height):
            return f"⛔ ({x:.1f}, {y:.1f}) is outside the image; mark the point 'outside' instead"

        def change() -> None:
            state["points"][index] = [float(x), float(y)]
            if state["vis"][index] == OUTSIDE:
                state["vis"][index] = VISIBLE

        msg = self._edit(state, user, change)
        if state["auto_advance"] and not msg.startswith(("⛔", "⚠")):
            state["selected"] = (index + 1) % N_POINTS
        return f"moved {point_label(index)} · {msg}" if msg else ""

    def nudge(self, state: dict, dx: float, dy: float, user: str | None) -> str:
        sel = state["selected"]
        if sel is None or state["image_id"] is None:
            return "select a point first"
        x, y = state["points"][sel]
        if x is None or y is None:
            return "the selected point has no position yet: click where it belongs"
        step = 1.0 / max(state["view"]["a"], 1e-6) if state["view"] else 1.0
        return self.move(state, sel, x + dx * max(step, 0.25), y + dy * max(step, 0.25), user)

    def select(self, state: dict, ref: Any) -> str:
        if ref in (None, ""):
            return ""
        try:
            state["selected"] = parse_point_ref(str(ref).split()[0] if str(ref)[:2].isdigit() else ref)
        except ValueError as exc:
            return f"⛔ {exc}"
        return f"selected {point_label(state['selected'])}"

    def step_point(self, state: dict, delta: int) -> str:
        state["selected"] = ((state["selected"] if state["selected"] is not None else -delta) + delta) % N_POINTS
        return f"selected {point_label(state['selected'])}"

    def set_visibility(self, state: dict, value: str | int | None, user: str | None) -> str:
        """value None cycles visible -> occluded -> outside -> visible."""
        sel = state["selected"]
        if sel is None:
            return "select a point first"
        cur = state["vis"][sel]
        if value is None:
            new = {VISIBLE: OCCLUDED, OCCLUDED: OUTSIDE, OUTSIDE: VISIBLE}[cur]
        else:
            new = VISIBILITY_CODES[value] if isinstance(value, str) else int(value)
        if new != OUTSIDE and state["points"][sel][0] is None:
            return "click where the point belongs first"

        def change() -> None:
            state["vis"][sel] = new

        msg = self._edit(state, user, change)
        return f"{point_label(sel)} is {VISIBILITY_NAMES[state['vis'][sel]]}" + (f" · {msg}" if msg else "")

    def undo(self, state: dict, user: str | None) -> str:
        if not state["undo"]:
            return "nothing to undo"
        prev = state["undo"].pop()
        state["redo"].append(self._snapshot(state))
        state["points"], state["vis"] = prev["points"], prev["vis"]
        return "undone · " + self.save(state, user)

    def redo(self, state: dict, user: str | None) -> str:
        if not state["redo"]:
            return "nothing to redo"
        nxt = state["redo"].pop()
        state["undo"].append(self._snapshot(state))
        state["points"], state["vis"] = nxt["points"], nxt["vis"]
        return "redone · " + self.save(state, user)

    # ------------------------------------------------------------------ faces
    def switch_face(self, state: dict, face: int | str) -> str:
        if state["image_id"] is None or face in (None, ""):
            return ""
        self.open_image(state, state["image_id"], int(str(face).split()[-1]), remember=False)
        return f"face {state['face']}"

    def add_face(self, state: dict, user: str | None) -> str:
        """A new face from the mean shape in the middle of the view; drag its points into place."""
        if state["image_id"] is None:
            return "no image open"
        if not self.store.can(user, "label"):
            return "⛔ log in as a labeler to add faces"
        rec = self.store.get_image(state["image_id"])
        if state["view"]:
            w, h = state["view"]["w"], state["view"]["h"]
            cx, cy = self.to_photo(state, w / 2, h / 2)
            size = 0.5 * min(w, h) / state["view"]["a"]
        else:
            cx, cy, size = rec.width / 2, rec.height / 2, 0.4 * min(rec.width, rec.height)
        pts = template_face(cx, cy, size)
        pts[:, 0] = pts[:, 0].clip(0, rec.width)
        pts[:, 1] = pts[:, 1].clip(0, rec.height)
        face = self.store.next_face_index(state["image_id"])
        state.update(face=face, revision=0, points=_nan_list(pts), vis=[VISIBLE] * N_POINTS, box=None,
                     selected=0, undo=[], redo=[])
        return f"added face {face} · " + self.save(state, user)

    def delete_face(self, state: dict, user: str | None) -> str:
        if state["image_id"] is None or state["face"] not in state["faces"]:
            return "no saved face to delete"
        try:
            self.store.delete_face(state["image_id"], state["face"], base_revision=state["revision"], user=user)
        except ConflictError as exc:
            state["conflict"] = True
            return f"⚠️ {exc}"
        except StoreError as exc:
            return f"⛔ {exc}"
        face = state["face"]
        self.open_image(state, state["image_id"], None, remember=False)
        return f"deleted face {face} (kept in history)"

    def detect(self, state: dict, user: str | None) -> str:
        """Run the pre-labeller on the open image when it has no faces yet."""
        if state["image_id"] is None:
            return "no image open"
        if not self.store.can(user, "label"):
            return "⛔ log in as a labeler first"
        if self.store.get_annotations(state["image_id"], include_deleted=True):
            return "this image already has faces; use 'Add face' for a missing one"
        if self._prelabeller is None:
            self._prelabeller = get_prelabeller(self.prelabeller_spec or "detector")
        from annotate.prelabel import prelabel_image

        image, scale = self.cache.get(self.store, state["image_id"])
        to_orig = None if scale == 1.0 else (lambda p: (np.asarray(p) + 0.5) / scale - 0.5)
        try:
            n = prelabel_image(self.store, state["image_id"], image, self._prelabeller, to_orig)
        except Exception as exc:  # detector back-ends raise many types; show it to the user
            return f"⛔ pre-labelling failed: {exc}"
        self.open_image(state, state["image_id"], None, remember=False)
        return f"pre-labeller found {n} face(s)"

    # ------------------------------------------------------------------ queue and status
    def queue_ids(self, state: dict) -> list[int]:
        return [r.id for r in self.store.list_images(self.project, statuses=state["queue"] or None,
                                                     order=state["order"])]

    def next_image(self, state: dict, user: str | None, *, skip: bool = False) -> str:
        user = self._user(state, user)
        if skip and state["image_id"] is not None:
            state["skipped"].append(state["image_id"])
        ids = self.queue_ids(state)
        cur = state["image_id"]
        after = ids[ids.index(cur) + 1:] + ids[:ids.index(cur)] if cur in ids else ids
        skipped = set(state["skipped"])
        busy = {r.id for r in self.store.list_images(self.project, statuses=["in_progress"])
                if r.assignee and r.assignee != user}
        for pool in ([i for i in after if i not in skipped and i not in busy and i != cur],
                     [i for i in after if i not in skipped and i != cur]):
            if pool:
                self.open_image(state, pool[0])
                return ""
        if skip or cur is None or cur not in ids:
            if ids and cur not in ids:
                self.open_image(state, ids[0])
                return ""
            return "🎉 nothing left in this queue"
        return "this is the only image left in the queue"

    def prev_image(self, state: dict) -> str:
        if not state["visited"]:
            return "no previous image"
        image_id = state["visited"].pop()
        self.open_image(state, image_id, remember=False)
        return ""

    def goto(self, state: dict, image_id: Any) -> str:
        try:
            self.open_image(state, int(image_id))
        except (StoreError, TypeError, ValueError) as exc:
            return f"⛔ {exc}"
        return ""

    def set_status(self, state: dict, status: str, user: str | None, comment: str | None = None,
                   advance: bool = True) -> str:
        if state["image_id"] is None:
            return "no image open"
        user = self._user(state, user)
        try:
            self.store.set_status(state["image_id"], status, user=user, comment=comment)
        except (PermissionDenied, ValidationError) as exc:
            return f"⛔ {exc}"
        msg = f"image {state['image_id']} marked {status.replace('_', ' ')}"
        if advance:
            nxt = self.next_image(state, user)
            msg += f" · {nxt}" if nxt else ""
        return msg

    # ------------------------------------------------------------------ display
    def render(self, state: dict) -> np.ndarray | None:
        """The photo zoomed to the face (or whole), skeleton per group, selected point highlighted."""
        import cv2

        if state["image_id"] is None:
            state["view"] = None
            return None
        image, scale = self.cache.get(self.store, state["image_id"])
        H, W = image.shape[:2]
        pts = self.points(state)
        vis = np.asarray(state["vis"])
        loaded = (pts + 0.5) * scale - 0.5
        labelled = np.isfinite(loaded).all(1) & (vis != OUTSIDE)
        if state["zoom"] == "face" and labelled.sum() >= 2:
            p = loaded[labelled]
            (x0, y0), (x1, y1) = p.min(0), p.max(0)
            side = max(x1 - x0, y1 - y0, 16.0) * (1 + 2 * state["margin"])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            cx0, cy0 = int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2)))
            cx1, cy1 = int(min(W, np.ceil(cx + side / 2))), int(min(H, np.ceil(cy + side / 2)))
        else:
            cx0, cy0, cx1, cy1 = 0, 0, W, H
        crop = image[cy0:cy1, cx0:cx1]
        s = self.display_size / max(crop.shape[:2])
        out_w, out_h = max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))
        s_x = out_w / crop.shape[1]
        disp = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)
        disp = np.ascontiguousarray(disp)
        # photo x -> loaded xl = (x + 0.5) * scale - 0.5 -> display u = (xl - cx0 + 0.5) * s - 0.5
        a = scale * s_x
        state["view"] = {"a": a, "bx": (0.5 * scale - cx0) * s_x - 0.5, "by": (0.5 * scale - cy0) * s_x - 0.5,
                         "w": out_w, "h": out_h}
        d = self.to_display(state, pts)
        shift = 4
        f = float(1 << shift)

        def ip(q: np.ndarray) -> tuple[int, int]:
            return int(round(q[0] * f)), int(round(q[1] * f))

        thick = max(1, round(self.display_size / 480))
        for i, j in EDGES:
            if labelled[i] and labelled[j]:
                cv2.line(disp, ip(d[i]), ip(d[j]), colour_of(i), thick, cv2.LINE_AA, shift)
        radius = max(3, round(self.display_size / 180))
        for i in range(N_POINTS):
            if not labelled[i]:
                continue
            colour = colour_of(i)
            cv2.circle(disp, ip(d[i]), radius * int(f) + int(f), (0, 0, 0), 1, cv2.LINE_AA, shift)
            if vis[i] == OCCLUDED:
                cv2.circle(disp, ip(d[i]), radius * int(f), colour, 2, cv2.LINE_AA, shift)
            else:
                cv2.circle(disp, ip(d[i]), radius * int(f), colour, -1, cv2.LINE_AA, shift)
            if state["show_numbers"]:
                cv2.putText(disp, str(i), (int(d[i][0]) + radius + 1, int(d[i][1]) - radius), cv2.FONT_HERSHEY_SIMPLEX,
                            0.35, (255, 255, 255), 1, cv2.LINE_AA)
        sel = state["selected"]
        if sel is not None and np.isfinite(d[sel]).all():
            cv2.circle(disp, ip(d[sel]), (radius * 3) * int(f), (255, 255, 255), 2, cv2.LINE_AA, shift)
            cv2.circle(disp, ip(d[sel]), (radius * 3 + 2) * int(f), (0, 0, 0), 1, cv2.LINE_AA, shift)
            cv2.putText(disp, point_label(sel), (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(disp, point_label(sel), (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                        cv2.LINE_AA)
        return disp

    def info_markdown(self, state: dict) -> str:
        if state["image_id"] is None:
            return "*no image open*"
        rec = self.store.get_image(state["image_id"])
        ann = self.store.get_annotation(rec.id, state["face"])
        parts = [f"**{rec.name}** (#{rec.id}, {rec.width}×{rec.height}, {rec.split}) · status **{rec.status}**",
                 f"face {state['face']} of {max(len(state['faces']), 1)} · revision {state['revision']}"]
        if ann is not None:
            parts.append(f"last saved by {ann.updated_by or 'anonymous'} ({ann.source})")
        if rec.confidence is not None:
            parts.append(f"pre-label confidence {rec.confidence:.2f}")
        if rec.status == "rejected" and rec.comment:
            parts.append(f"\n\n❗ rejected by {rec.status_by}: *{rec.comment}*")
        elif rec.comment:
            parts.append(f"\n\nnote: *{rec.comment}*")
        hidden = int(sum(1 for v in state["vis"] if v == OUTSIDE))
        if hidden:
            parts.append(f"{hidden} point(s) outside/unplaced")
        return " · ".join(parts)

    def progress_markdown(self, user: str | None = None) -> str:
        p = self.store.progress(self.project)
        text = (f"**{p['finished']} of {p['total']} done** (approved {p['approved']}, done {p['done']}, "
                f"needs review {p['needs_review']}, rejected {p['rejected']}, in progress {p['in_progress']}, "
                f"todo {p['todo']})")
        if user:
            role = self.store.role_of(user) or ("no login" if not self.store.auth_enabled else "unknown")
            text = f"👤 {user} ({role}) · " + text
        elif self.store.auth_enabled:
            text = "🔒 not logged in: read-only · " + text
        return text

    def stats_rows(self) -> list[list[Any]]:
        stats = self.store.labeler_stats(self.project)
        return [[u, s["saves"], s["images"], s["done"], s["approved"], s["rejected"]] for u, s in sorted(stats.items())]

    def history_rows(self, state: dict) -> list[list[Any]]:
        import time

        if state["image_id"] is None:
            return []
        rows = []
        for h in self.store.history(state["image_id"]):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.created_at))
            rows.append([h.face, h.revision, h.user or "anonymous", h.source, when, "deleted" if h.deleted else ""])
        for e in self.store.task_events(state["image_id"]):
            rows.append(["", "", e["user"] or "anonymous", f"status → {e['status']}",
                         time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["created_at"])), e["comment"] or ""])
        return sorted(rows, key=lambda r: r[4])


