"""Gradio UI: the Annotate and Review tabs.

* :func:`build_annotation_tabs` adds the tabs inside an existing ``gr.Blocks`` (used by ``app.py``);
  :func:`create_app` builds a stand-alone app; :func:`launch_kwargs` gives ``auth=`` for ``Blocks.launch``.
* All logic lives in :class:`annotate.labeling.Annotator` (plain methods on a per-session ``gr.State`` dict); the
  handlers here only fetch the logged-in user from ``gr.Request`` and render the result. The photo and its points
  are edited in the browser by :mod:`annotate.editor` (drag, zoom, pan), whose edits go through the same Annotator.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import gradio as gr  # module level: handler annotations (gr.Request, gr.SelectData) must resolve here

from annotate.labeling import QUEUES, REVIEW_QUEUE, Annotator
from annotate.login import LoginThrottle
from annotate.skeleton import GROUPS, POINT_NAMES
from annotate.store import Store

# Gradio-button shortcuts; the editor itself handles its keys (arrows, z/y, v, ., [, ], zoom...) - see its "?" help.
SHORTCUTS = {"n": "ann-next", "p": "ann-prev", "s": "ann-skip", "d": "ann-done", "r": "ann-review"}
SHORTCUT_HELP = ("Keys: **n**/**p** next/previous image, **s** skip, **d** done, **r** needs review; in the editor: "
                 "drag points, wheel/pinch to zoom, drag the photo to pan, arrows nudge, **z**/**y** undo/redo, "
                 "**v** visibility, **g** whole group, **[** **]** scale it, **1**/**2**/**4** zoom 100/200/400% "
                 "(**?** in the editor lists them all). Every change is saved at once.")
_SHORTCUT_JS = """
if (!window.__msmaAnnotateKeys) {
  window.__msmaAnnotateKeys = true;
  const map = %s;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' ||
                         t.isContentEditable);
    if (e.altKey || e.metaKey || e.ctrlKey || typing || e.defaultPrevented) return;
    const id = map[e.key];
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null) return;  // tab not visible
    const btn = el.tagName === 'BUTTON' ? el : el.querySelector('button') || el;
    e.preventDefault();
    btn.click();
  });
}
"""


def shortcut_js() -> str:
    return _SHORTCUT_JS % json.dumps(SHORTCUTS)



# ---------------------------------------------------------------------------------------------------- Gradio wiring
PRIVATE = {"api_name": False, "api_visibility": "private"}  # UI events: not in the API page or the client libraries
log = logging.getLogger("annotate.ui")


def _safe(fn):
    """Unexpected failures -> a short gr.Error (logged here), never the exception text in the page."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("annotation handler failed")
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); reload the page and try again.",
                           print_exception=False) from None

    return wrapper


def _username(request: Any) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def gradio_auth(store: Store):
    """``auth=`` for ``Blocks.launch``: the store's users, throttled (annotate.login); None when there are none."""
    if not store.list_users():
        return None
    return LoginThrottle(store.authenticate).check


def launch_kwargs(store: Store | str) -> dict:
    """Keyword arguments for ``demo.launch(**launch_kwargs(store))``: store-backed login when users exist."""
    store = store if isinstance(store, Store) else Store(store)
    auth = gradio_auth(store)
    return {"auth": auth, "auth_message": "MSMA annotation: log in with your labeler account"} if auth else {}


def build_annotation_tabs(store: Store | str, project: str | None = None, *, prelabeller: Any = None,
                          display_size: int = 720) -> Annotator:
    """Add the "Annotate" and "Review" tabs to the enclosing ``gr.Blocks`` (call inside ``with gr.Blocks():``,
    optionally inside ``with gr.Tabs():``). Returns the :class:`Annotator` behind them.

    The editor's edits reach Python through a server function (``EditorBridge.handle``, one HTTP round trip); the
    buttons are ordinary events. Both hold the tab's session lock, so they never interleave (annotate.editor.bridge).
    """
    from annotate.editor.bridge import EditorBridge
    from annotate.editor.component import LandmarkEditor

    ann = Annotator(store, project, prelabeller=prelabeller, display_size=display_size)
    bridge = EditorBridge(ann)
    stats_headers = ["user", "saves", "images", "done", "approved", "rejected"]

    def lmk_apply(op):  # the editor's server function: page -> EditorBridge.handle -> new value
        try:
            return bridge.handle(op)
        except Exception as exc:  # noqa: BLE001 - logged; the page keeps the edit and shows the error
            log.exception("landmark editor op failed")
            return {"error": f"the edit could not be applied ({type(exc).__name__}); reload the page", "ack": 0}

    with gr.Tab("Annotate"):
        state = gr.State(None, delete_callback=bridge.sessions.drop)
        progress_md = gr.Markdown(ann.progress_markdown())
        with gr.Row():
            with gr.Column(scale=3):
                editor = LandmarkEditor(elem_id="ann-editor", server_functions=[lmk_apply])
                message = gr.Markdown("", elem_id="ann-message")
                with gr.Row():
                    prev_btn = gr.Button("◀ Prev (p)", elem_id="ann-prev", size="sm")
                    skip_btn = gr.Button("Skip (s)", elem_id="ann-skip", size="sm")
                    next_btn = gr.Button("Next ▶ (n)", elem_id="ann-next", size="sm")
                    reload_btn = gr.Button("⟳ Reload", elem_id="ann-reload", size="sm")
                with gr.Row():
                    done_btn = gr.Button("✔ Done (d)", variant="primary", elem_id="ann-done", size="sm")
                    review_btn = gr.Button("? Needs review (r)", elem_id="ann-review", size="sm")
                    note = gr.Textbox(label="note for the reviewer (this image only)", lines=1, scale=2,
                                      elem_id="ann-note")
                gr.Markdown(SHORTCUT_HELP)
            with gr.Column(scale=1):
                info_md = gr.Markdown("", elem_id="ann-info")
                guest = gr.Textbox(label="your name (recorded with your edits; login is off)",
                                   visible=not ann.store.auth_enabled)
                queue = gr.Dropdown(list(QUEUES), value=list(QUEUES)[0], label="queue")
                order = gr.Radio(["queue", "name", "id"], value="queue", label="order (queue = worst pre-label first)")
                with gr.Row():
                    goto_id = gr.Number(label="open image #", precision=0, scale=2)
                    goto_btn = gr.Button("Open", size="sm", scale=1)
                face = gr.Dropdown([], label="face", allow_custom_value=True)
                with gr.Row():
                    add_face_btn = gr.Button("+ face", size="sm")
                    del_face_btn = gr.Button("delete face", size="sm")
                    detect_btn = gr.Button("pre-label", size="sm")
                stats = gr.Dataframe(headers=stats_headers, label="per labeler", interactive=False)
        gr.HTML("", js_on_load=shortcut_js(), elem_id="ann-shortcuts")

    outputs = [state, editor, info_md, message, face, progress_md, stats, note]

    def view(st: dict, msg: str, user: str | None, before: int | None = None) -> tuple:
        faces = [f"face {f}" for f in st["faces"]] or [f"face {st['face']}"]
        face_value = f"face {st['face']}"
        if face_value not in faces:
            faces.append(face_value)
        note_update = "" if st["image_id"] != before else gr.skip()  # a note belongs to one image
        return (st, bridge.value(st, user, msg), ann.info_markdown(st), msg,
                gr.update(choices=faces, value=face_value), ann.progress_markdown(user), ann.stats_rows(),
                note_update)

    def who(request: gr.Request, guest_name: str | None) -> str | None:
        return _username(request) or ((guest_name or "").strip() or None if not ann.store.auth_enabled else None)

    def ensure(st: dict | None) -> dict:
        return st if st else ann.new_state()

    @_safe
    def on_load(st, guest_name, request: gr.Request):
        with bridge.sessions.locked(ensure(st)) as st:
            user = st["editor_user"] = who(request, guest_name)
            msg = ann.next_image(st, user) if st["image_id"] is None else ""
            st["editor_sent"] = None  # a (re)loaded page has no photo yet
            return view(st, msg, user)

    @_safe
    def on_guest(st, guest_name, request: gr.Request):  # the typed name signs the editor's next edits
        with bridge.sessions.locked(ensure(st)) as st:
            st["editor_user"] = who(request, guest_name)
            return st

    def simple(fn):
        @_safe
        def handler(st, guest_name, request: gr.Request):
            with bridge.sessions.locked(ensure(st)) as st:
                user = st["editor_user"] = who(request, guest_name)
                before = st["image_id"]
                return view(st, fn(st, user), user, before)
        return handler

    def with_value(fn):
        @_safe
        def handler(st, value, guest_name, request: gr.Request):
            with bridge.sessions.locked(ensure(st)) as st:
                user = st["editor_user"] = who(request, guest_name)
                before = st["image_id"]
                return view(st, fn(st, value, user), user, before)
        return handler

    common = dict(outputs=outputs, show_progress="hidden", concurrency_id="annotate", concurrency_limit=4, **PRIVATE)
    guest.change(on_guest, [state, guest], [state], show_progress="hidden", **PRIVATE)
    for btn, fn in [
        (next_btn, lambda st, u: ann.next_image(st, u)),
        (skip_btn, lambda st, u: ann.next_image(st, u, skip=True)),
        (prev_btn, lambda st, u: ann.prev_image(st)),
        (reload_btn, lambda st, u: ann.reload(st)),
        (add_face_btn, ann.add_face), (del_face_btn, ann.delete_face),
    ]:
        btn.click(simple(fn), [state, guest], **common)
    detect_btn.click(simple(ann.detect), [state, guest], outputs=outputs, show_progress="minimal",
                     concurrency_id="annotate-prelabel", concurrency_limit=1, **PRIVATE)  # slow: own queue
    done_btn.click(with_value(lambda st, c, u: ann.set_status(st, "done", u, c or None)),
                   [state, note, guest], **common)
    review_btn.click(with_value(lambda st, c, u: ann.set_status(st, "needs_review", u, c or None)),
                     [state, note, guest], **common)
    face.input(with_value(lambda st, v, u: ann.switch_face(st, v)), [state, face, guest], **common)
    goto_btn.click(with_value(lambda st, v, u: ann.goto(st, v)), [state, goto_id, guest], **common)

    def set_opt(key, convert=lambda v: v, reopen=False):
        def fn(st, value, user):
            st[key] = convert(value)
            if reopen:
                st["skipped"] = []
            return ""
        return with_value(fn)

    queue.input(set_opt("queue", lambda v: list(QUEUES[v]), True), [state, queue, guest], **common)
    order.input(set_opt("order"), [state, order, guest], **common)

    _build_review_tab(ann)

    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(on_load, [state, guest], outputs=outputs, concurrency_id="annotate", concurrency_limit=4,
                  **PRIVATE)
    return ann


def _build_review_tab(ann: Annotator) -> None:
    with gr.Tab("Review"):
        rstate = gr.State(None)
        progress_md = gr.Markdown(ann.progress_markdown())
        with gr.Row():
            with gr.Column(scale=3):
                image = gr.Image(label="submitted annotation", interactive=False, type="numpy", format="jpeg",
                                 buttons=["fullscreen"])
                message = gr.Markdown("")
                with gr.Row():
                    start = gr.Button("Start / next ▶", size="sm")
                    approve = gr.Button("✔ Approve", variant="primary", size="sm")
                    reject = gr.Button("✘ Reject", variant="stop", size="sm")
                    reopen = gr.Button("Reopen for labeling", size="sm")
                comment = gr.Textbox(label="comment for this image (required to reject)", lines=2,
                                     elem_id="rev-comment")
            with gr.Column(scale=2):
                info_md = gr.Markdown("")
                face = gr.Dropdown([], label="face", allow_custom_value=True)
                history = gr.Dataframe(headers=["face", "revision", "user", "action", "time", "note"],
                                       label="history", interactive=False)
        with gr.Accordion("Quality report (inter-labeler NME)", open=False):
            report_btn = gr.Button("Compute", size="sm")
            report_md = gr.Markdown("")
            report_plot = gr.Plot()

    outputs = [rstate, image, info_md, message, face, history, progress_md, comment]

    def view(st: dict, msg: str, user: str | None, before: int | None) -> tuple:
        faces = [f"face {f}" for f in st["faces"]] or [f"face {st['face']}"]
        comment_update = "" if st["image_id"] != before else gr.skip()  # a comment never carries over
        return (st, ann.render(st), ann.info_markdown(st), msg, gr.update(choices=faces, value=f"face {st['face']}"),
                ann.history_rows(st), ann.progress_markdown(user), comment_update)

    def handler(fn):
        @_safe
        def run(st, value, request: gr.Request):
            st = st or ann.new_state(REVIEW_QUEUE)
            user = _username(request)
            before = st["image_id"]
            return view(st, fn(st, value, user), user, before)
        return run

    def review(status):
        def fn(st, text, user):
            if status in ("approved", "rejected") and not ann.store.can(user, "review"):
                return "⛔ only reviewers can approve or reject" + (" (log in first)" if not user else "")
            return ann.set_status(st, status, user, (text or "").strip() or None)
        return fn

    start.click(handler(lambda st, v, u: ann.next_image(st, u)), [rstate, comment], outputs, **PRIVATE)
    approve.click(handler(review("approved")), [rstate, comment], outputs, **PRIVATE)
    reject.click(handler(review("rejected")), [rstate, comment], outputs, **PRIVATE)
    reopen.click(handler(review("in_progress")), [rstate, comment], outputs, **PRIVATE)
    face.input(handler(lambda st, v, u: ann.switch_face(st, v)), [rstate, face], outputs, **PRIVATE)

    @_safe
    def run_report():
        from annotate.quality import quality_figure, quality_report

        rep = quality_report(ann.store, ann.project)
        return rep.summary().replace("\n", "\n\n"), quality_figure(rep)

    report_btn.click(run_report, None, [report_md, report_plot], **PRIVATE)


def create_app(store: Store | str, project: str | None = None, *, prelabeller: Any = None,
               display_size: int = 720) -> Any:
    """Stand-alone Blocks app with the Annotate and Review tabs (``python -m annotate serve``)."""
    with gr.Blocks(title="MSMA annotate") as demo:
        gr.Markdown("## MSMA landmark annotation")
        with gr.Tabs():
            build_annotation_tabs(store, project, prelabeller=prelabeller, display_size=display_size)
    return demo


__all__ = ["Annotator", "GROUPS", "POINT_NAMES", "build_annotation_tabs", "create_app", "gradio_auth",
           "launch_kwargs", "shortcut_js"]
