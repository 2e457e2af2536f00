"""Server side of the browser landmark editor, free of Gradio: the value sent to the page and the edits it sends back.

The editor (``static/landmark_editor.js``) shows the photo and the points, applies every gesture on screen at once and
sends it as an *op* straight to :meth:`EditorBridge.handle` (a Gradio server function: one HTTP round trip, no
queue). The op runs through :class:`annotate.labeling.Annotator` (so autosave, undo/redo, role checks and conflict
handling are the same as everywhere else) and the answer is :meth:`EditorBridge.value`: the authoritative state with
the id of the last op processed. The page sends one op at a time, in order, so it can show
"server state + ops not yet answered" without ever losing or reordering an edit.

Sessions: the Annotator state of a browser tab lives in its ``gr.State``; :class:`EditorSessions` also holds it under
a random key that only that tab receives (in the editor's value), so the server function finds it. One lock per
session serialises the server function and the tab's Gradio events.

Ops (JSON objects from the page): ``{"session", "id", "op", "image_id", "face", "doc", ...}`` with ``op`` one of
``set`` (``changes`` = ``[[index, x, y, visibility], ...]``, x/y ``null`` for a point without position, plus
``revision`` / ``points`` / ``vis``: the face as the page shows it, saved directly when the tab has meanwhile moved
to another face), ``undo``, ``redo``, ``reload`` and ``refresh`` (send the photo again).
"""

from __future__ import annotations

import base64
import contextlib
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from annotate.labeling import Annotator
from annotate.skeleton import EDGES, GROUPS, N_POINTS, OUTSIDE, POINT_NAMES, VISIBILITY_NAMES
from annotate.store import ConflictError, StoreError

EDITOR_IMAGE_MAX_SIDE = 2048  # photos are sent to the page at most this large (enough for 4x zoom on a face)
JPEG_QUALITY = 90
OPS = ("set", "undo", "redo", "reload", "refresh")
REFUSED_KEPT = 50
MAX_SESSIONS = 2000  # open browser tabs remembered (least recently used dropped first)


class OpError(ValueError):
    """A malformed op from the page (never applied)."""


def skeleton_config() -> dict:
    """Point names, groups (name, first, last, closed, RGB) and skeleton edges for the page."""
    return {"names": list(POINT_NAMES), "groups": [[g, a, b, closed, list(rgb)] for g, a, b, closed, rgb in GROUPS],
            "edges": [list(e) for e in EDGES]}


class PhotoEncoder:
    """JPEG data URLs of the photos for the page, downscaled to ``max_side`` (a small LRU shared by sessions)."""

    def __init__(self, ann: Annotator, max_side: int = EDITOR_IMAGE_MAX_SIDE, size: int = 6):
        self.ann, self.max_side, self.size = ann, int(max_side), size
        self._data: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def data_url(self, image_id: int, key: str) -> str:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        import cv2

        image, _scale = self.ann.cache.get(self.ann.store, image_id)
        h, w = image.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
            raise RuntimeError(f"could not encode image {image_id}")
        url = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
        with self._lock:
            self._data[key] = url
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return url


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise OpError(f"coordinate {v!r} is not a finite number")
    return float(v)


def parse_changes(changes: Any) -> list[tuple[int, float | None, float | None, int]]:
    """Validate ``[[index, x, y, visibility], ...]`` from the page (types only; the store checks the bounds)."""
    if not isinstance(changes, list) or not changes or len(changes) > N_POINTS:
        raise OpError("an edit needs 1 to 68 changed points")
    out, seen = [], set()
    for item in changes:
        if not isinstance(item, list) or len(item) != 4:
            raise OpError("each change is [index, x, y, visibility]")
        i, x, y, v = item
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < N_POINTS or i in seen:
            raise OpError(f"bad point index {i!r}")
        if isinstance(v, bool) or v not in VISIBILITY_NAMES:
            raise OpError(f"bad visibility {v!r} (0 outside, 1 occluded, 2 visible)")
        x, y = _number(x), _number(y)
        if (x is None) != (y is None) or (v != OUTSIDE and x is None):
            raise OpError(f"point {i} needs both coordinates unless it is outside")
        seen.add(i)
        out.append((i, x, y, int(v)))
    return out


def _failed(message: str) -> bool:
    return "⛔" in message or "⚠" in message


class EditorSessions:
    """key -> (Annotator state dict, lock) for the tabs that have an editor open (LRU-bounded)."""

    def __init__(self, size: int = MAX_SESSIONS):
        self.size = size
        self._data: OrderedDict[str, tuple[dict, threading.RLock]] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, state: dict) -> dict:
        """The registered state for this tab (``state`` itself the first time); gives it a key if it has none."""
        with self._lock:
            key = state.get("editor_session")
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key][0]
            key = secrets.token_hex(16)
            state["editor_session"] = key
            self._data[key] = (state, threading.RLock())
            while len(self._data) > self.size:
                self._data.popitem(last=False)
            return state

    def get(self, key: Any) -> tuple[dict, threading.RLock] | None:
        with self._lock:
            if not isinstance(key, str) or key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    @contextlib.contextmanager
    def locked(self, state: dict) -> Iterator[dict]:
        """Register ``state`` and hold its session lock: Gradio events and editor ops of a tab never interleave."""
        state = self.register(state)
        entry = self.get(state["editor_session"])
        lock = entry[1] if entry else threading.RLock()
        with lock:
            yield state

    def drop(self, state: Any) -> None:
        if isinstance(state, dict):
            with self._lock:
                self._data.pop(state.get("editor_session"), None)


class EditorBridge:
    """Per-app helper; all per-user data lives in the session ``state`` dict of the :class:`Annotator`."""

    def __init__(self, ann: Annotator, max_side: int = EDITOR_IMAGE_MAX_SIDE):
        self.ann = ann
        self.photos = PhotoEncoder(ann, max_side)
        self.sessions = EditorSessions()

    # ------------------------------------------------------------------ page -> server
    def handle(self, op: Any) -> dict:
        """The server function behind the editor: apply one op of the tab whose key it carries; returns the new
        value. The acting user is the one the tab's last Gradio event identified (login, or the typed name)."""
        entry = self.sessions.get(op.get("session") if isinstance(op, dict) else None)
        if entry is None:
            return {"error": "this page's editing session has expired: reload the page", "ack": 0}
        state, lock = entry
        with lock:
            user = state.get("editor_user")
            msg = self.apply(state, op, user)
            return self.value(state, user, msg)

    def apply(self, state: dict, op: Any, user: str | None) -> str:
        """Run one op from the page; returns the message for the user (refusals are messages, never exceptions)."""
        ann = self.ann
        try:
            if not isinstance(op, dict):
                raise OpError("an edit must be a JSON object")
            op_id, kind = op.get("id"), op.get("op")
            if isinstance(op_id, bool) or not isinstance(op_id, int) or op_id < 1:
                raise OpError(f"bad op id {op_id!r}")
            if kind not in OPS:
                raise OpError(f"unknown op {kind!r}")
        except OpError as exc:
            return f"⛔ edit ignored: {exc}"
        state["editor_ack"] = max(int(state.get("editor_ack", 0)), op_id)
        if kind == "refresh":
            state["editor_sent"] = None
            return ""
        if state["image_id"] is None:
            return self._refuse(state, op_id, "⛔ no image open")
        if (op.get("image_id"), op.get("face"), op.get("doc")) != (state["image_id"], state["face"],
                                                                   state.get("editor_doc")):
            return self._apply_elsewhere(state, op, op_id, user)
        if kind == "undo":
            msg = ann.undo(state, user)
        elif kind == "redo":
            msg = ann.redo(state, user)
        elif kind == "reload":
            msg = ann.reload(state)
        else:
            try:
                changes = parse_changes(op.get("changes"))
            except OpError as exc:
                return self._refuse(state, op_id, f"⛔ edit ignored: {exc}")

            def change() -> None:
                for i, x, y, v in changes:
                    state["points"][i] = [x, y]
                    state["vis"][i] = v

            msg = ann._edit(state, user, change)  # same autosave / rollback / conflict path as every edit
        if _failed(msg):
            self._refuse(state, op_id, msg)
        return msg

    def _apply_elsewhere(self, state: dict, op: dict, op_id: int, user: str | None) -> str:
        """An edit made just before the tab switched to another face (sent after the switch): save the face as the
        page showed it, on top of the revision the page had, straight into the store (refused on conflict)."""
        if op.get("op") != "set":
            return self._refuse(state, op_id, "⚠️ undo / redo of a face that is no longer open was not applied")
        try:
            image_id, face, revision = op.get("image_id"), op.get("face"), op.get("revision")
            for v in (image_id, face, revision):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise OpError("an edit of another face needs its image, face and revision")
            points, vis = op.get("points"), op.get("vis")
            if not isinstance(points, list) or not isinstance(vis, list) or len(points) != N_POINTS:
                raise OpError("an edit of another face needs all its points")
            full = parse_changes([[i, p[0], p[1], v] for i, (p, v) in enumerate(zip(points, vis))
                                  if isinstance(p, list) and len(p) == 2])
            if len(full) != N_POINTS:
                raise OpError("an edit of another face needs all its points")
            pts = np.array([[np.nan if x is None else x, np.nan if y is None else y] for _i, x, y, _v in full])
            saved = self.ann.store.save(image_id, pts, [v for *_r, v in full], base_revision=revision, user=user,
                                      face=face, source="manual")
        except OpError as exc:
            return self._refuse(state, op_id, f"⛔ edit ignored: {exc}")
        except ConflictError as exc:
            return self._refuse(state, op_id, f"⚠️ your last edit of image {op.get('image_id')} was not saved: {exc}")
        except StoreError as exc:
            return self._refuse(state, op_id, f"⛔ your last edit of image {op.get('image_id')} was not saved: {exc}")
        return f"saved your last edit of image {image_id} (revision {saved.revision})"

    @staticmethod
    def _refuse(state: dict, op_id: int, message: str) -> str:
        refused = state.setdefault("editor_refused", [])
        refused.append(op_id)
        del refused[:-REFUSED_KEPT]
        return message

    # ------------------------------------------------------------------ server -> page
    def value(self, state: dict, user: str | None, message: str = "") -> dict:
        """The editor's value: photo (only when the page does not have it yet), points, revision, flags."""
        ann = self.ann
        key = [state["image_id"], state["face"]]
        if state.get("editor_key") != key:
            state["editor_doc"] = int(state.get("editor_doc", 0)) + 1
            state["editor_key"] = key
        state["editor_seq"] = int(state.get("editor_seq", 0)) + 1
        out: dict[str, Any] = {
            "session": state.get("editor_session"),
            "image_id": state["image_id"], "face": state["face"], "doc": state["editor_doc"],
            "seq": state["editor_seq"], "width": None, "height": None, "image": None, "image_key": None,
            "points": [list(p) for p in state["points"]], "vis": [int(v) for v in state["vis"]],
            "revision": state["revision"], "selected": None, "readonly": True,
            "can_undo": bool(state["undo"]), "can_redo": bool(state["redo"]), "conflict": bool(state["conflict"]),
            "message": message or "", "ack": int(state.get("editor_ack", 0)),
            "refused": list(state.get("editor_refused", [])),
        }
        if state["image_id"] is None:
            return out
        rec = ann.store.get_image(state["image_id"])
        image_key = f"{rec.id}:{rec.sha256[:16]}"
        out.update(width=rec.width, height=rec.height, image_key=image_key)
        if state.get("editor_sent") != image_key:
            out["image"] = {"key": image_key, "src": self.photos.data_url(rec.id, image_key)}
            state["editor_sent"] = image_key
        approved_lock = rec.status == "approved" and not ann.store.can(user, "review")
        out["readonly"] = not ann.store.can(user, "label") or approved_lock
        return out
