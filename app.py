"""MSMA web app: one photo of a face in, an animatable 3D face out, plus the landmark annotation tabs.

    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --auth alice:secret
    python app.py --help

UI wiring only: the logic lives in ``msma/app/`` (tested without a browser in tests/test_app.py).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path

from annotate.login import MIN_PASSWORD_LENGTH, LoginThrottle, password_check
from msma import app as H
from msma.app.video import build_video_tab

GPU, GPU_INFO = H.gpu_decorator(duration=60)  # spaces.GPU on ZeroGPU Spaces only (imports `spaces` before torch)
GPU_VIDEO, _ = H.gpu_decorator(duration=180)  # a clip: decode, landmarks, fit and five exports

import gradio as gr  # noqa: E402 - after `spaces`; module level so handler annotations (gr.SelectData) resolve

log = logging.getLogger("msma.app")
TOAST_S = 7  # error / warning toasts close by themselves: a recovered error never sits beside a later good result
PRIVATE = {"api_name": False, "api_visibility": "private"}  # UI-only events: not in the API page or client libraries


# ------------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python app.py",
        description="MSMA Gradio app: 3D face reconstruction from one photo (Reconstruct, Compare) and the "
                    "landmark annotation tabs (Annotate, Review).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    net = p.add_argument_group("server")
    net.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                     help="interface to listen on; 0.0.0.0 exposes the app to your network (env GRADIO_SERVER_NAME)")
    net.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                     help="TCP port (env GRADIO_SERVER_PORT)")
    net.add_argument("--share", action="store_true", help="also open a temporary public *.gradio.live link")
    net.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                     help="require a login; repeat for several users (env MSMA_APP_AUTH='u1:p1,u2:p2')")
    net.add_argument("--auth-file", default=None, metavar="FILE", help="file with one USER:PASSWORD per line")
    net.add_argument("--concurrency", type=int, default=int(env("MSMA_APP_CONCURRENCY", "2")),
                     help="reconstructions run at once (the rest wait in the queue)")
    net.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait in the queue")
    net.add_argument("--max-file-size", default="20mb", help="largest upload accepted")
    models = p.add_argument_group("models")
    models.add_argument("--weights", default=None,
                        help="MSMA network weights (default: $MSMA_WEIGHTS, weights/msma_light.safetensors, "
                             "$MSMA_WEIGHTS_REPO on the Hub; without weights only 'fitting' is offered)")
    models.add_argument("--ablation-weights", default=None,
                        help="plain-ResNet weights for the Compare tab (default: $MSMA_ABLATION_WEIGHTS or "
                             "weights/plain_light.safetensors when present)")
    models.add_argument("--detector", default="auto", help="face detector: auto | mediapipe | dlib | face_alignment")
    models.add_argument("--device", default="auto", help="auto | cpu | cuda")
    models.add_argument("--max-side", type=int, default=H.APP_MAX_SIDE, help="photos are downscaled to this size")
    models.add_argument("--no-warmup", action="store_true", help="skip the warm-up reconstruction at start-up")
    ann = p.add_argument_group("annotation tabs")
    ann.add_argument("--annotate-dir", default=env("ANNOTATE_DIR", "annotation_project"),
                     help="annotation project folder (python -m annotate init DIR); tabs show set-up help when absent")
    ann.add_argument("--annotate-project", default=None, help="project name inside the store (default: the only one)")
    ann.add_argument("--annotate-open-access", action="store_true",
                     help="with no users in the annotation store, let anyone edit without a login (default: the "
                          "tabs are read-only until `python -m annotate users add NAME --role labeler` adds one)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def auth_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    entries = list(args.auth)
    entries += [e for e in os.environ.get("MSMA_APP_AUTH", "").split(",") if e.strip()]
    if args.auth_file:
        entries += [line.strip() for line in Path(args.auth_file).read_text().splitlines() if line.strip()]
    pairs = []
    for entry in entries:
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"--auth expects USER:PASSWORD, got {entry!r}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise SystemExit(f"--auth: the password of {user!r} is shorter than {MIN_PASSWORD_LENGTH} characters")
        pairs.append((user, password))
    return pairs


def login_kwargs(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> dict:
    """``launch()`` keyword arguments for the login. One source of truth for users and roles: when the annotation
    store has users, its accounts are the login (and their roles apply in the Annotate / Review tabs), and
    ``--auth`` pairs are refused; otherwise the ``--auth`` pairs, if any. Both are throttled (annotate.login)."""
    store = _annotation_store(args)
    if store is not None and store.list_users():
        if pairs:
            raise SystemExit(f"the annotation store {store.db_path} has its own users, so --auth / --auth-file / "
                             "MSMA_APP_AUTH cannot add more: log in with the store's accounts and manage them with "
                             f"`python -m annotate users add NAME --role labeler -d {store.root}`")
        from annotate.ui import launch_kwargs

        return launch_kwargs(store)
    if pairs:
        return {"auth": LoginThrottle(password_check(dict(pairs))).check, "auth_message": "MSMA: please log in"}
    return {}


# ------------------------------------------------------------------------------------------------------ UI
def ui(fn):
    """Handler errors -> readable gr.Error (never a stack trace in the page)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (H.AppError, FileNotFoundError) as exc:
            raise gr.Error(str(exc), duration=TOAST_S, print_exception=False) from None
        except Exception as exc:  # noqa: BLE001
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}). Try another photo or method.",
                           duration=TOAST_S, print_exception=False) from None

    return wrapper


def warn(messages: list[str]) -> None:
    for message in messages:
        gr.Warning(message, duration=TOAST_S)


def build_demo(models: H.AppModels, args: argparse.Namespace | None = None) -> gr.Blocks:
    args = args or parse_args([])
    choices = models.choices()
    examples = H.example_photos()
    n_expr, n_id = len(H.KEY_EXPRESSIONS), H.N_IDENTITY_SLIDERS
    info = models.describe()

    with gr.Blocks(title="MSMA: 3D face from one photo", delete_cache=(1800, 7200)) as demo:
        gr.Markdown("# MSMA: an animatable 3D face from one photo")
        header = (f"Face model **{info['face_model']}** · methods: {info['methods']} · device `{info['device']}`")
        loading = getattr(models, "status_markdown", None)  # msma.app.startup.BackgroundModels
        model_status = gr.Markdown(loading() if loading else header, elem_id="model-status")
        with gr.Tabs():
            # ------------------------------------------------------------------------------ Reconstruct
            with gr.Tab("Reconstruct", id="reconstruct"):
                state = gr.State(None, time_to_live=H.OUTPUT_MAX_AGE_S)
                with gr.Row():
                    with gr.Column(scale=1):
                        photo = gr.Image(type="filepath", label="photo", sources=["upload", "webcam", "clipboard"],
                                         elem_id="photo", height=320)
                        method = gr.Radio(choices, value=models.default, label="method", elem_id="method")
                        with gr.Accordion("details", open=False):
                            texture = gr.Checkbox(True, label="texture from the photo (UV unwrap)")
                            photometric = gr.Checkbox(True, label="photometric refinement (slower, finer)")
                            wireframe = gr.Checkbox(False, label="wireframe overlay")
                        run = gr.Button("Reconstruct", variant="primary", elem_id="run")
                        if examples:
                            gr.Examples(examples, inputs=[photo], label="examples (click one)")
                        status = gr.Markdown("", elem_id="status")
                        gallery = gr.Gallery(label="faces in the photo (click to pick)", columns=5, height=130,
                                             allow_preview=False, fit_columns=False, object_fit="contain",
                                             elem_id="faces")
                        face_no = gr.Number(1, precision=0, minimum=1, label="face # (1 = largest)")
                    with gr.Column(scale=2):
                        viewer = gr.Model3D(label="3D face (drag to rotate)", height=420, elem_id="viewer",
                                            clear_color=(0.93, 0.93, 0.93, 1.0))
                        with gr.Row():
                            overlay = gr.Image(label="mesh + landmarks on the photo", interactive=False,
                                               elem_id="overlay", format="jpeg")
                            shape = gr.Image(label="shape only", interactive=False, elem_id="shape", format="jpeg")
                        plot = gr.Plot(label="expression weights", elem_id="blendshapes")
                        with gr.Row():
                            pose = gr.Markdown(elem_id="pose")
                            downloads = gr.File(label="downloads: OBJ+MTL+PNG zip, rigged GLB (53 ARKit morph "
                                                      "targets), static GLB, PLY, blendshape JSON",
                                                file_count="multiple", interactive=False, elem_id="downloads")
                        with gr.Accordion("edit: expression and identity (re-poses the face, no re-fit)", open=False):
                            with gr.Row():
                                expr = [gr.Slider(0, 1, 0, step=0.01, label=name, min_width=120)
                                        for name in H.KEY_EXPRESSIONS]
                            with gr.Row():
                                ident = [gr.Slider(-H.IDENTITY_RANGE, H.IDENTITY_RANGE, 0, step=0.05,
                                                   label=f"identity mode {i + 1}", min_width=120)
                                         for i in range(n_id)]
                            reset = gr.Button("reset to the reconstruction", size="sm")

                first_out = [viewer, status, state, face_no]
                detail_out = [overlay, shape, plot, pose, downloads, gallery, *expr, *ident]

                @GPU
                @ui
                def on_reconstruct(value, method_key, tex, photo_refine, session):
                    upload = H.client_upload(value)
                    if upload is None:
                        return None, "", None, 1
                    res = H.reconstruct(models, upload, method_key, tex, photo_refine, session=session)
                    warn(res.warnings)
                    return res.glb, res.status, res.session, res.session.selected + 1

                @GPU
                @ui
                def on_select_number(number, session):
                    res = H.select_face(models, session, int(number or 1) - 1)
                    return res.glb, res.status, res.session, res.session.selected + 1

                def on_select_gallery(session, evt: gr.SelectData):
                    return on_select_number(evt.index + 1, session)

                @ui
                def on_details(session, wire):
                    d = H.details(models, session, wire)
                    if d is None:
                        return [None, None, None, "", None, None] + [0] * (n_expr + n_id)
                    return [d.overlay, d.shape, d.blendshape_plot, d.pose_markdown, d.downloads, d.gallery,
                            *d.expression_values, *d.identity_values]

                # the sliders drive the rigged face: the viewer's GLB first (its default morph weights are the
                # slider values), then the downloads of the edited face (rigged + static GLB, OBJ, PLY, JSON)
                @ui
                def on_repose(session, *values):
                    return H.repose(models, session, values[:n_expr], values[n_expr:], downloads=False).glb

                @ui
                def on_repose_downloads(session, *values):
                    return H.repose(models, session, values[:n_expr], values[n_expr:]).downloads

                @ui
                def on_reset(session):
                    values = H.slider_values(session)
                    return [H.repose(models, session, values[:n_expr], values[n_expr:], downloads=False).glb,
                            *values]

                # One endpoint for both triggers: the only handlers that read a client's file are the three public
                # API endpoints, each through H.client_upload; the UI-only events below are private.
                inputs = [photo, method, texture, photometric, state]
                gr.on([photo.change, run.click], on_reconstruct, inputs, first_out, preprocess=False,
                      api_name="reconstruct", concurrency_id="heavy").success(
                    on_details, [state, wireframe], detail_out, **PRIVATE)
                face_no.submit(on_select_number, [face_no, state], first_out, concurrency_id="heavy",
                               **PRIVATE).success(on_details, [state, wireframe], detail_out, **PRIVATE)
                gallery.select(on_select_gallery, [state], first_out, concurrency_id="heavy", **PRIVATE).success(
                    on_details, [state, wireframe], detail_out, **PRIVATE)
                wireframe.change(on_details, [state, wireframe], detail_out, **PRIVATE)
                for slider in expr + ident:
                    slider.release(on_repose, [state, *expr, *ident], [viewer], show_progress="minimal",
                                   **PRIVATE).success(on_repose_downloads, [state, *expr, *ident], [downloads],
                                                      show_progress="hidden", **PRIVATE)
                reset.click(on_reset, [state], [viewer, *expr, *ident], **PRIVATE).success(
                    ui(H.reconstruction_downloads), [state], [downloads], show_progress="hidden", **PRIVATE)

            # ------------------------------------------------------------------------------ Compare
            with gr.Tab("Compare", id="compare"):
                gr.Markdown("### Same photo, two methods")
                with gr.Row():
                    with gr.Column(scale=1):
                        cmp_photo = gr.Image(type="filepath", label="photo", sources=["upload", "webcam", "clipboard"],
                                             height=260)
                        second = choices[1][1] if len(choices) > 1 else choices[0][1]
                        method_a = gr.Dropdown(choices, value=choices[0][1], label="method A")
                        method_b = gr.Dropdown(choices, value=second, label="method B")
                        cmp_photometric = gr.Checkbox(True, label="photometric refinement")
                        cmp_run = gr.Button("Compare methods", variant="primary")
                        if examples:
                            gr.Examples(examples, inputs=[cmp_photo])
                    with gr.Column(scale=2):
                        with gr.Row():
                            view_a = gr.Model3D(label="A", height=300, clear_color=(0.93, 0.93, 0.93, 1.0))
                            view_b = gr.Model3D(label="B", height=300, clear_color=(0.93, 0.93, 0.93, 1.0))
                        with gr.Row():
                            over_a = gr.Image(label="A overlay", interactive=False, format="jpeg")
                            over_b = gr.Image(label="B overlay", interactive=False, format="jpeg")
                        slider_view = gr.ImageSlider(label="A ⟷ B (drag the divider)", format="jpeg")
                        cmp_summary = gr.Markdown()

                @GPU
                @ui
                def on_compare(value, a, b, refine):
                    res = H.compare_methods(models, H.client_upload(value), a, b, photometric=refine)
                    warn(res.warnings)
                    return res.glb_a, res.glb_b, res.overlay_a, res.overlay_b, (res.overlay_a, res.overlay_b), \
                        res.summary

                cmp_run.click(on_compare, [cmp_photo, method_a, method_b, cmp_photometric],
                              [view_a, view_b, over_a, over_b, slider_view, cmp_summary], preprocess=False,
                              api_name="compare_methods", concurrency_id="heavy")

                gr.Markdown("### Two photos: same person?")
                with gr.Row():
                    id_a = gr.Image(type="filepath", label="photo A", height=220)
                    id_b = gr.Image(type="filepath", label="photo B", height=220)
                    with gr.Column():
                        id_method = gr.Dropdown(choices, value=models.default, label="method")
                        id_run = gr.Button("Compare identities", variant="primary")
                        id_summary = gr.Markdown()
                with gr.Row():
                    shape_a = gr.Model3D(label="identity shape A", height=280)
                    shape_b = gr.Model3D(label="identity shape B", height=280)
                    heat = gr.Plot(label="per-vertex distance (mm)")

                @GPU
                @ui
                def on_identity(a, b, method_key):
                    res = H.compare_identities(models, H.client_upload(a, what="photo A"),
                                               H.client_upload(b, what="photo B"), method_key)
                    warn(res.warnings)
                    return res.glb_a, res.glb_b, res.heatmap, res.summary

                id_run.click(on_identity, [id_a, id_b, id_method], [shape_a, shape_b, heat, id_summary],
                             preprocess=False, api_name="compare_identities", concurrency_id="heavy")

            # ------------------------------------------------------------------------------ Video
            build_video_tab(models, ui, GPU_VIDEO, warn)

            # ------------------------------------------------------------------------------ Annotate
            _annotation_tabs(args)

            with gr.Tab("About", id="about"):
                about = gr.Markdown(_about(info))

        if loading is not None and "⏳" in loading():  # while the models load: progress, then what loaded
            timer = gr.Timer(1.0)

            def on_tick():
                text = loading()
                return text, _about(models.describe()), gr.Timer(active="⏳" in text)

            timer.tick(on_tick, None, [model_status, about, timer], show_progress="hidden", api_name=False,
                       api_visibility="private")
    return demo


def _about(info: dict) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in info.items()) + f"\n- **ZeroGPU**: {GPU_INFO}"


def _annotation_tabs(args: argparse.Namespace) -> None:
    """Mount annotate.ui.build_annotation_tabs, or an explanatory tab when it or the project store is missing."""
    try:
        from annotate.cli import open_store_for_ui
        from annotate.ui import build_annotation_tabs
    except ImportError as exc:
        with gr.Tab("Annotate", id="annotate"):
            gr.Markdown(f"The annotation toolkit is not available in this installation ({exc}).")
        return
    root = Path(args.annotate_dir)
    try:
        store = open_store_for_ui(root, open_access=args.annotate_open_access)
    except FileNotFoundError:
        with gr.Tab("Annotate", id="annotate"):
            gr.Markdown(f"No annotation project at `{root}`. Create one and restart the app:\n\n"
                        f"```\npython -m annotate init {root}\npython -m annotate import PHOTO_FOLDER -d {root}\n"
                        f"python -m annotate users add NAME --role labeler -d {root}\n"
                        f"python app.py --annotate-dir {root}\n```\n\nWithout users the tabs are read-only "
                        "(`--annotate-open-access` lets anyone edit).")
        return
    build_annotation_tabs(store, args.annotate_project)
    log.info("annotation tabs: project store %s", store.db_path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    login = login_kwargs(args, auth_pairs(args))  # before the models load: a bad login setup fails at once
    # the page is served at once; the models load (and warm up) behind it, with their progress on the page
    from msma.app.startup import BackgroundModels, planned_methods

    methods, default = planned_methods(args.weights, args.ablation_weights)
    models = BackgroundModels(
        lambda: H.AppModels.load(weights=args.weights, ablation_weights=args.ablation_weights, detector=args.detector,
                                 device=args.device, max_side=args.max_side, gpu=GPU_INFO),
        methods, default, max_side=args.max_side, warmup=not args.no_warmup)
    demo = build_demo(models, args)
    serve(demo, args, login, prevent_thread_lock=True)
    models.start()  # after the server is up: loading competes with serving the first page for the interpreter
    demo.block_thread()


def serve(demo: gr.Blocks, args: argparse.Namespace, login: dict, **extra):
    """Queue and launch ``demo`` with the app's server settings (tests pass ``prevent_thread_lock=True``)."""
    demo.queue(default_concurrency_limit=max(1, args.concurrency), max_size=args.max_queue)
    log.info("serving on %s:%s (concurrency %d, queue %d, max upload %s, login %s)", args.host, args.port,
             args.concurrency, args.max_queue, args.max_file_size, "on" if login.get("auth") else "off")
    # show_error: every handler turns its own failures into a short gr.Error (see `ui`), so what else reaches the
    # client is Gradio's refusal of a payload (e.g. a file path it did not upload), which should not be blank.
    return demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                       max_file_size=args.max_file_size, show_error=True, state_session_capacity=500,
                       footer_links=["api", "settings"], **login, **extra)


def _annotation_store(args: argparse.Namespace):
    """The annotation project's store, or None when there is none at --annotate-dir."""
    from annotate.store import Store

    try:
        return Store(args.annotate_dir)
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
