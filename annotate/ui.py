"""Gradio UI: the Annotate and Review tabs.

* :func:`build_annotation_tabs` adds the tabs inside an existing ``gr.Blocks`` (used by ``app.py``);
  :func:`create_app` builds a stand-alone app; :func:`launch_kwargs` gives ``auth=`` for ``Blocks.launch``.
* All logic lives in :class:`annotate.labeling.Annotator` (plain methods on a per-session ``gr.State`` dict); the
  handlers here only fetch the logged-in user from ``gr.Request`` and render the result.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import gradio as gr  # module level: handler annotations (gr.Request, gr.SelectData) must resolve here

from annotate.labeling import QUEUES, REVIEW_QUEUE, Annotator
from annotate.login import LoginThrottle
from annotate.skeleton import GROUPS, N_POINTS, OCCLUDED, OUTSIDE, POINT_NAMES, VISIBILITY_NAMES, VISIBLE, point_label
from annotate.store import Store

SHORTCUTS = {
    "n": "ann-next", "p": "ann-prev", "s": "ann-skip", "z": "ann-undo", "y": "ann-redo", "v": "ann-vis",
    "d": "ann-done", "r": "ann-review", ".": "ann-pt-next", ",": "ann-pt-prev",
    "ArrowLeft": "ann-left", "ArrowRight": "ann-right", "ArrowUp": "ann-up", "ArrowDown": "ann-down",
}
SHORTCUT_HELP = ("Keys: **n**/**p** next/previous image, **s** skip, **z**/**y** undo/redo, **v** cycle visibility, "
                 "**.**/**,** next/previous point, arrows nudge 1 px, **d** done, **r** needs review.")
_SHORTCUT_JS = """
if (!window.__msmaAnnotateKeys) {
  window.__msmaAnnotateKeys = true;
  const map = %s;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (e.altKey || e.metaKey || typing) return;
    const key = e.key;
    if (e.ctrlKey && key !== 'z' && key !== 'y') return;
    const id = map[key];
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
    optionally inside ``with gr.Tabs():``). Returns the :class:`Annotator` behind them."""
    ann = Annotator(store, project, prelabeller=prelabeller, display_size=display_size)
    point_choices = [point_label(i) for i in range(N_POINTS)]
    vis_choices = [VISIBILITY_NAMES[VISIBLE], VISIBILITY_NAMES[OCCLUDED], VISIBILITY_NAMES[OUTSIDE]]
    stats_headers = ["user", "saves", "images", "done", "approved", "rejected"]

    with gr.Tab("Annotate"):
        state = gr.State(None)
        progress_md = gr.Markdown(ann.progress_markdown())
        with gr.Row():
            with gr.Column(scale=3):
                image = gr.Image(label="click near a point to select it, click elsewhere to move it there",
                                 interactive=False, type="numpy", format="jpeg", elem_id="ann-image",
                                 buttons=["fullscreen"])
                message = gr.Markdown("", elem_id="ann-message")
                with gr.Row():
                    prev_btn = gr.Button("◀ Prev (p)", elem_id="ann-prev", size="sm")
                    skip_btn = gr.Button("Skip (s)", elem_id="ann-skip", size="sm")
                    next_btn = gr.Button("Next ▶ (n)", elem_id="ann-next", size="sm")
                    undo_btn = gr.Button("↶ Undo (z)", elem_id="ann-undo", size="sm")
                    redo_btn = gr.Button("↷ Redo (y)", elem_id="ann-redo", size="sm")
                    reload_btn = gr.Button("⟳ Reload", elem_id="ann-reload", size="sm")
                with gr.Row():
                    done_btn = gr.Button("✔ Done (d)", variant="primary", elem_id="ann-done", size="sm")
                    review_btn = gr.Button("? Needs review (r)", elem_id="ann-review", size="sm")
                    note = gr.Textbox(label="note for reviewer (optional)", lines=1, scale=2)
                gr.Markdown(SHORTCUT_HELP)
            with gr.Column(scale=1):
                info_md = gr.Markdown("")
                guest = gr.Textbox(label="your name (only used when login is off)", visible=not ann.store.auth_enabled)
                queue = gr.Dropdown(list(QUEUES), value=list(QUEUES)[0], label="queue")
                order = gr.Radio(["queue", "name", "id"], value="queue", label="order (queue = worst pre-label first)")
                with gr.Row():
                    goto_id = gr.Number(label="open image #", precision=0, scale=2)
                    goto_btn = gr.Button("Open", size="sm", scale=1)
                point = gr.Dropdown(point_choices, label="point (number or name)", filterable=True)
                with gr.Row():
                    pt_prev = gr.Button("‹ point (,)", elem_id="ann-pt-prev", size="sm")
                    pt_next = gr.Button("point › (.)", elem_id="ann-pt-next", size="sm")
                vis = gr.Radio(vis_choices, label="visibility of the selected point")
                vis_btn = gr.Button("cycle visibility (v)", elem_id="ann-vis", size="sm")
                with gr.Row():
                    left = gr.Button("←", elem_id="ann-left", size="sm", min_width=30)
                    up = gr.Button("↑", elem_id="ann-up", size="sm", min_width=30)
                    down = gr.Button("↓", elem_id="ann-down", size="sm", min_width=30)
                    right = gr.Button("→", elem_id="ann-right", size="sm", min_width=30)
                face = gr.Dropdown([], label="face", allow_custom_value=True)
                with gr.Row():
                    add_face_btn = gr.Button("+ face", size="sm")
                    del_face_btn = gr.Button("delete face", size="sm")
                    detect_btn = gr.Button("pre-label", size="sm")
                zoom = gr.Radio(["face", "full image"], value="face", label="zoom")
                margin = gr.Slider(0.05, 1.5, value=0.35, step=0.05, label="margin around the face")
                numbers = gr.Checkbox(label="show point numbers", value=False)
                advance = gr.Checkbox(label="after a move, select the next point", value=False)
                stats = gr.Dataframe(headers=stats_headers, label="per labeler", interactive=False)
        gr.HTML("", js_on_load=shortcut_js(), elem_id="ann-shortcuts")

    outputs = [state, image, info_md, message, point, vis, face, progress_md, stats]

    def view(st: dict, msg: str, user: str | None) -> tuple:
        img = ann.render(st)
        sel = st["selected"]
        faces = [f"face {f}" for f in st["faces"]] or [f"face {st['face']}"]
        face_value = f"face {st['face']}"
        if face_value not in faces:
            faces.append(face_value)
        return (st, img, ann.info_markdown(st), msg,
                gr.update(value=point_label(sel) if sel is not None else None),
                gr.update(value=VISIBILITY_NAMES[st["vis"][sel]] if sel is not None else None),
                gr.update(choices=faces, value=face_value),
                ann.progress_markdown(user), ann.stats_rows())

    def who(request: gr.Request, guest_name: str | None) -> str | None:
        return _username(request) or ((guest_name or "").strip() or None if not ann.store.auth_enabled else None)

    def ensure(st: dict | None) -> dict:
        return st if st else ann.new_state()

    @_safe
    def on_load(st, guest_name, request: gr.Request):
        st = ensure(st)
        user = who(request, guest_name)
        msg = ann.next_image(st, user) if st["image_id"] is None else ""
        return view(st, msg, user)

    @_safe
    def on_click(st, guest_name, evt: gr.SelectData, request: gr.Request):
        st = ensure(st)
        user = who(request, guest_name)
        u, v = evt.index[0], evt.index[1]
        return view(st, ann.click(st, float(u), float(v), user), user)

    def simple(fn):
        @_safe
        def handler(st, guest_name, request: gr.Request):
            st = ensure(st)
            user = who(request, guest_name)
            return view(st, fn(st, user), user)
        return handler

    def with_value(fn):
        @_safe
        def handler(st, value, guest_name, request: gr.Request):
            st = ensure(st)
            user = who(request, guest_name)
            return view(st, fn(st, value, user), user)
        return handler

    common = dict(outputs=outputs, show_progress="hidden", **PRIVATE)
    image.select(on_click, [state, guest], **common)
    for btn, fn in [
        (next_btn, lambda st, u: ann.next_image(st, u)),
        (skip_btn, lambda st, u: ann.next_image(st, u, skip=True)),
        (prev_btn, lambda st, u: ann.prev_image(st)),
        (undo_btn, ann.undo), (redo_btn, ann.redo),
        (reload_btn, lambda st, u: ann.reload(st)),
        (vis_btn, lambda st, u: ann.set_visibility(st, None, u)),
        (pt_next, lambda st, u: ann.step_point(st, 1)), (pt_prev, lambda st, u: ann.step_point(st, -1)),
        (left, lambda st, u: ann.nudge(st, -1, 0, u)), (right, lambda st, u: ann.nudge(st, 1, 0, u)),
        (up, lambda st, u: ann.nudge(st, 0, -1, u)), (down, lambda st, u: ann.nudge(st, 0, 1, u)),
        (add_face_btn, ann.add_face), (del_face_btn, ann.delete_face), (detect_btn, ann.detect),
    ]:
        btn.click(simple(fn), [state, guest], **common)
    done_btn.click(with_value(lambda st, c, u: ann.set_status(st, "done", u, c or None)),
                   [state, note, guest], **common)
    review_btn.click(with_value(lambda st, c, u: ann.set_status(st, "needs_review", u, c or None)),
                     [state, note, guest], **common)
    point.input(with_value(lambda st, v, u: ann.select(st, v)), [state, point, guest], **common)
    vis.input(with_value(lambda st, v, u: ann.set_visibility(st, v, u)), [state, vis, guest], **common)
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
    zoom.input(set_opt("zoom", lambda v: "face" if v == "face" else "full"), [state, zoom, guest], **common)
    margin.release(set_opt("margin", float), [state, margin, guest], **common)
    numbers.input(set_opt("show_numbers", bool), [state, numbers, guest], **common)
    advance.input(set_opt("auto_advance", bool), [state, advance, guest], **common)

    _build_review_tab(ann)

    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(on_load, [state, guest], outputs=outputs, **PRIVATE)
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
                comment = gr.Textbox(label="comment (required to reject)", lines=2)
            with gr.Column(scale=2):
                info_md = gr.Markdown("")
                face = gr.Dropdown([], label="face", allow_custom_value=True)
                history = gr.Dataframe(headers=["face", "revision", "user", "action", "time", "note"],
                                       label="history", interactive=False)
        with gr.Accordion("Quality report (inter-labeler NME)", open=False):
            report_btn = gr.Button("Compute", size="sm")
            report_md = gr.Markdown("")
            report_plot = gr.Plot()

    outputs = [rstate, image, info_md, message, face, history, progress_md]

    def view(st: dict, msg: str, user: str | None) -> tuple:
        faces = [f"face {f}" for f in st["faces"]] or [f"face {st['face']}"]
        return (st, ann.render(st), ann.info_markdown(st), msg, gr.update(choices=faces, value=f"face {st['face']}"),
                ann.history_rows(st), ann.progress_markdown(user))

    def handler(fn):
        @_safe
        def run(st, value, request: gr.Request):
            st = st or ann.new_state(REVIEW_QUEUE)
            user = _username(request)
            return view(st, fn(st, value, user), user)
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
