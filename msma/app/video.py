"""The app's Video tab: a clip in, its tracked performance out (`msma.track`), plus a live webcam mode.

Handlers are plain functions (no Gradio import at module level), tested in tests/test_app_video.py;
:func:`build_video_tab` creates the tab's components and events inside ``app.py``'s Blocks. The rules of
``msma/app/`` apply: problems the user can fix raise :class:`AppError`, non-fatal notes come back as
``warnings``, client files only pass through :func:`client_upload` (or, for webcam frames, an in-memory ``data:``
URL), and every output is written under the session's folder in ``OUTPUT_ROOT``.

* clip: the first :data:`MAX_CLIP_S` seconds, frames downscaled to :data:`VIDEO_MAX_SIDE`, the largest face only;
  outputs: the animated rigged GLB, the overlay MP4, curves of the main weights and the head pose, the Live Link
  Face CSV, per-frame JSON and NPZ (`msma.track_export`).
* webcam: per frame, mediapipe in video mode + the tracker's per-frame fit (`msma.track.FrameFitter`); the mean
  identity until :data:`LIVE_IDENTITY_FRAMES` frames were seen, then one identity fitted to them
  (`msma.track.fit_identity`). No gaze, no smoothing: the raw per-frame fit.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msma.app.inputs import Upload, client_upload, file_stem
from msma.app.state import AppError, AppModels, new_workdir

log = logging.getLogger(__name__)

MAX_CLIP_S = float(os.environ.get("MSMA_APP_MAX_CLIP_S", "10"))  # seconds of a clip tracked (hosted CPU budget)
VIDEO_MAX_SIDE = int(os.environ.get("MSMA_APP_VIDEO_MAX_SIDE", "720"))  # frames downscaled to this for tracking
MAX_SOURCE_SIDE = 8192  # larger frames are refused (decoding alone would take minutes)
VIDEO_KEYFRAMES = 3  # frames fitted together for the clip's identity
LIVE_MAX_SIDE = 480  # webcam frames are downscaled to this
LIVE_IDENTITY_FRAMES = 6  # webcam frames (one every LIVE_IDENTITY_EVERY) fitted together for the identity
LIVE_IDENTITY_EVERY = 3
LIVE_TOP = 10  # weights shown per webcam frame
MAX_FRAME_BYTES = 8 * 1024 * 1024  # a webcam frame's data URL larger than this is refused
LIVE_TTL_S = 600  # a webcam session's landmarker is closed this long after its last frame

# curve name -> ICT blendshapes averaged into it
CURVES: dict[str, tuple[str, ...]] = {
    "jawOpen": ("jawOpen",),
    "mouthSmile_L": ("mouthSmile_L",),
    "mouthSmile_R": ("mouthSmile_R",),
    "eyeBlink_L": ("eyeBlink_L",),
    "eyeBlink_R": ("eyeBlink_R",),
    "browInnerUp": ("browInnerUp_L", "browInnerUp_R"),
}
DOWNLOAD_ORDER = ("csv", "glb", "json", "npz", "mp4")

Progress = Callable[[float, str], None]


# ------------------------------------------------------------------------------------------------ clip
@dataclass
class VideoSession:
    """Per-user folder of the Video tab (lives in a gr.State)."""

    workdir: str
    counter: int = 0

    def new_dir(self, tag: str) -> Path:
        self.counter += 1
        path = Path(self.workdir) / f"{self.counter:03d}_{tag}_{uuid.uuid4().hex[:10]}"
        path.mkdir(parents=True, exist_ok=False)
        return path


@dataclass
class VideoResult:
    session: VideoSession
    glb: str | None  # animated rigged face
    preview_mp4: str | None  # the clip with the fitted mesh drawn over it
    curves: Any  # plotly Figure
    downloads: list[str]
    summary: str  # markdown
    warnings: list[str]
    files: dict[str, str] = field(default_factory=dict)  # "csv" | "glb" | "json" | "npz" | "mp4" -> path
    n_frames: int = 0
    tracked_frames: int = 0


def _video_upload(value: Any) -> tuple[str, str]:
    """(path, name) of a clip: an :class:`Upload`, a local path (the Python caller is trusted) or a client payload
    (through :func:`client_upload`)."""
    if value is not None and not isinstance(value, (Upload, str, os.PathLike)):
        value = client_upload(value, what="video")
    if value is None:
        raise AppError("Please upload a video first.")
    if isinstance(value, Upload):
        return value.path, value.name
    return str(value), Path(value).name or "the video"


def _video_message(error: Exception, path: str, name: str) -> str:
    """The video module's sentence with the (temporary, meaningless) server path replaced by the file's name."""
    return str(error).replace(str(Path(path).resolve()), name).replace(str(path), name)


def _limited(frames: Iterator, max_seconds: float, total: float, progress: Progress | None,
             cut: list[bool]) -> Iterator:
    """The frames of the first ``max_seconds``; ``cut[0]`` becomes True when later frames were left out."""
    for frame in frames:  # a decoding error part-way propagates: the tracker keeps the frames before it
        if frame.time > max_seconds:
            cut[0] = True
            break
        if progress is not None and frame.index % 10 == 0:
            progress(0.05 + 0.6 * min(1.0, frame.time / max(total, 1e-6)), "landmarks")
        yield frame
    if progress is not None:
        progress(0.65, "fitting the identity and every frame")


def track_clip(models: AppModels, value: Any, session: VideoSession | None = None, max_seconds: float = MAX_CLIP_S,
               max_side: int = VIDEO_MAX_SIDE, settings=None, progress: Progress | None = None,
               preview: bool = True) -> VideoResult:
    """Track the largest face of a clip's first ``max_seconds`` and write every output into the session's folder.

    ``settings``: a `msma.track.TrackSettings` (default: the largest face, :data:`VIDEO_KEYFRAMES` keyframes,
    textured rig, frames at most ``max_side``). ``progress(fraction, stage)`` is called along the way."""
    from msma.landmarks import NoFaceError
    from msma.threads import single_torch_thread
    from msma.track import FaceTracker, TrackSettings
    from msma.video import VideoError, open_video

    start = time.perf_counter()
    path, name = _video_upload(value)
    settings = settings or TrackSettings(max_side=max_side, largest=True, keyframes=VIDEO_KEYFRAMES)
    reconstructor = models.engine(models.default).get(photometric=False)
    tracker = FaceTracker(reconstructor, settings)
    say = progress or (lambda fraction, stage: None)
    say(0.0, "decoding")
    warnings: list[str] = []
    cut = [False]
    try:
        with open_video(path, max_side=settings.max_side) as video:
            info = video.info
            if max(info.width, info.height) > MAX_SOURCE_SIDE:
                raise AppError(f"{name} is {info.width}×{info.height} px; videos up to {MAX_SOURCE_SIDE} px on "
                               "the longer side are accepted. Please upload a smaller copy.")
            if info.scale < 1.0:
                warnings.append(f"{name} is {info.width}×{info.height} px: frames were downscaled to "
                                f"{round(info.width * info.scale)}×{round(info.height * info.scale)} for tracking.")
            expected = min(info.duration or max_seconds, max_seconds)
            with single_torch_thread():  # requests run in parallel worker threads: see msma/threads.py
                result = tracker.track_frames(_limited(iter(video), max_seconds, expected, progress, cut),
                                              source=name, info=info, progress=False)
    except NoFaceError as error:
        raise AppError(f"No face found in {name}: {_no_face_reason(error, name)} Try a clip where one face is "
                       "large, well lit and facing the camera.") from None
    except VideoError as error:
        raise AppError(f"{_video_message(error, path, name)}. Please upload an MP4, MOV, WebM or MKV clip."
                       ) from None
    say(0.7, "writing outputs")
    declared = info.frame_count or (round(info.duration * info.fps) if info.duration and info.fps else 0)
    if not cut[0] and result.complete and declared and result.n_frames < 0.9 * declared - 1:
        warnings.append(f"{name}: decoded {result.n_frames} frames but the file declares about {declared}: it may "
                        "be truncated; the decoded frames are kept.")
    if cut[0]:
        warnings.append(f"Only the first {max_seconds:g} s of {name} were tracked (the app's limit); the command "
                        "line `python -m msma track` has none.")
    warnings += [_video_message(Exception(m), path, name) for m in result.messages
                 if not m.startswith("frames downscaled")]
    if session is None or not Path(session.workdir).is_dir():
        session = VideoSession(new_workdir())
    out = session.new_dir("video")
    files = _export(result, path, out, file_stem(name, "video"), preview, warnings, say)
    face = result.faces[0]
    summary = _summary(name, result, face, time.perf_counter() - start, files)
    say(1.0, "done")
    return VideoResult(session, files.get("glb"), files.get("mp4"), curves_figure(result, face),
                       [files[k] for k in DOWNLOAD_ORDER if k in files], summary, warnings, files, result.n_frames,
                       face.n_valid)


def _no_face_reason(error: Exception, name: str) -> str:
    text = str(error)
    text = text.split(": ", 1)[1] if text.startswith(name + ": ") else text
    return text.rstrip(".") + "."


def _export(result, video_path: str, out: Path, stem: str, preview: bool, warnings: list[str],
            say: Progress) -> dict[str, str]:
    """Every output of the (largest) face; a format that fails is left out with a warning, the others kept."""
    from msma.track_export import (
        export_animated_glb,
        export_livelink_csv,
        export_overlay_mp4,
        export_performance_json,
        export_performance_npz,
    )

    face = result.faces[0]
    jobs = [("csv", lambda p: export_livelink_csv(result, face, p), ".csv"),
            ("json", lambda p: export_performance_json(result, face, p), ".json"),
            ("npz", lambda p: export_performance_npz(result, face, p), ".npz"),
            ("glb", lambda p: export_animated_glb(result, face, p), ".glb")]
    if preview:
        jobs.append(("mp4", lambda p: export_overlay_mp4(result, video_path, p), "_overlay.mp4"))
    files: dict[str, str] = {}
    for k, (key, write, suffix) in enumerate(jobs):
        say(0.7 + 0.3 * k / len(jobs), f"writing {key}")
        try:
            files[key] = str(write(out / f"{stem}{suffix}"))
        except Exception as error:  # noqa: BLE001 - one failed format must not lose the others
            log.exception("video export %s failed", key)
            warnings.append(f"the {key.upper()} output could not be written ({type(error).__name__}); the other "
                            "outputs are kept.")
    return files


def _summary(name: str, result, face, seconds: float, files: Mapping[str, str]) -> str:
    duration = float(result.times[-1]) if result.n_frames > 1 else 0.0
    w, h = result.frame_size
    lost = result.n_frames - face.n_valid
    lines = [f"**{name}**: {result.n_frames} frames ({duration:.1f} s at {result.fps:.1f} fps, tracked at {w}×{h}) "
             f"in {seconds:.1f} s · face tracked in {face.n_valid} of {result.n_frames} frames"
             + (f" ({lost} without a face hold the nearest tracked values)" if lost else ""),
             f"identity from keyframes {', '.join(str(k) for k in face.keyframes)}"
             + (" · variable frame rate: frame timestamps kept" if result.variable_frame_rate else "")
             + ("" if result.complete else " · **decoding stopped early: the frames before are kept**")]
    if "csv" in files:
        lines.append("The CSV is a Live Link Face recording (Unreal's LiveLinkFaceImporter, Blender / Unity CSV "
                     "importers); the GLB plays the performance on the rigged face.")
    return "\n\n".join(lines)


def curves_figure(result, face):
    """Plotly figure: the main expression weights (top) and head yaw / pitch / roll in degrees (bottom) over time;
    frames without a face are gaps."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = np.asarray(result.times, np.float64)
    hide = ~np.asarray(face.valid, bool)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("expression weights", "head pose (degrees)"))
    for label, names in CURVES.items():
        idx = [face.names.index(n) for n in names if n in face.names]
        if not idx:
            continue
        y = face.weights[:, idx].mean(1).astype(np.float64)
        y[hide] = np.nan
        fig.add_trace(go.Scatter(x=t, y=y, name=label, mode="lines",
                                 hovertemplate=label + " %{y:.2f} at %{x:.2f} s<extra></extra>"), row=1, col=1)
    for k, label in ((1, "yaw"), (0, "pitch"), (2, "roll")):
        y = np.degrees(face.angles[:, k]).astype(np.float64)
        y[hide] = np.nan
        fig.add_trace(go.Scatter(x=t, y=y, name=f"head {label}", mode="lines", line={"dash": "dot"},
                                 hovertemplate=f"head {label} " + "%{y:.1f}° at %{x:.2f} s<extra></extra>"),
                      row=2, col=1)
    fig.update_yaxes(range=[0, 1], title_text="weight", row=1, col=1)
    fig.update_yaxes(title_text="degrees", row=2, col=1)
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(height=480, margin={"l": 50, "r": 10, "t": 40, "b": 40}, legend={"font": {"size": 10}})
    return fig


# ------------------------------------------------------------------------------------------------ webcam
@dataclass
class LiveSession:
    """One browser's webcam stream: its mediapipe video-mode landmarker and per-frame fitter (never shared)."""

    landmarker: Any  # msma.track.VideoLandmarker
    fitter: Any  # msma.track.FrameFitter
    points: Any  # msma.track.PointSet
    previous: Any = None  # msma.track.FrameState of the last frame with a face
    frames: int = 0
    identity_targets: list[np.ndarray] = field(default_factory=list)
    identity_fitted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        if self.landmarker is not None:
            self.landmarker.close()
            self.landmarker = None


@dataclass
class LiveFrame:
    session: LiveSession
    weights: dict[str, float]  # the strongest LIVE_TOP weights (name -> 0..1), {} without a face
    pose: dict[str, float]  # pitch, yaw, roll degrees, {} without a face
    pose_markdown: str
    status: str
    all_weights: dict[str, float] = field(default_factory=dict)


def new_live_session(models: AppModels) -> LiveSession:
    from msma.track import FrameFitter, PointSet, TrackSettings, VideoLandmarker

    settings = TrackSettings(max_faces=1)
    model = models.model
    points = PointSet.ibug68(model, settings)
    fitter = FrameFitter(model, np.zeros(model.n_identity), settings, points)
    landmarker = VideoLandmarker(1, settings.min_detection_confidence, settings.min_tracking_confidence)
    return LiveSession(landmarker, fitter, points)


def close_live_session(session: Any) -> None:
    """gr.State delete callback: free the session's mediapipe graph."""
    if isinstance(session, LiveSession):
        session.close()


def webcam_image(value: Any) -> np.ndarray | None:
    """A webcam frame as uint8 RGB: an ndarray, a ``data:image/...;base64`` URL (what a streaming webcam sends,
    decoded in memory) or an uploaded file (through :func:`client_upload`); None when there is no frame."""
    from msma.image_io import ImageLoadError, load_image

    if value is None:
        return None
    if isinstance(value, np.ndarray):
        try:
            return load_image(value, max_side=LIVE_MAX_SIDE)
        except ImageLoadError:
            raise AppError("The webcam frame is not a usable image.") from None
    url = value.get("url") if isinstance(value, Mapping) else getattr(value, "url", None)
    if isinstance(url, str) and url.startswith("data:image/"):
        head, _, data = url.partition(",")
        if ";base64" not in head or len(data) > MAX_FRAME_BYTES * 4 // 3 + 4:
            raise AppError("The webcam frame is not a usable image.")
        try:
            return load_image(base64.b64decode(data, validate=True), max_side=LIVE_MAX_SIDE)
        except (binascii.Error, ValueError, ImageLoadError):
            raise AppError("The webcam frame is not a usable image.") from None
    upload = client_upload(value, what="webcam frame")
    try:
        return load_image(upload.path, max_side=LIVE_MAX_SIDE)
    except ImageLoadError:
        raise AppError("The webcam frame is not a usable image.") from None


def live_frame(models: AppModels, value: Any, session: LiveSession | None = None) -> LiveFrame:
    """One webcam frame -> the largest face's expression weights and head pose (per-frame fit, identity fixed)."""
    from msma.align import estimate_transform, transform_points
    from msma.landmarks.base import box_from_points, five_points_from_68
    from msma.landmarks.mapping import mesh_to_68
    from msma.track import fit_frame

    image = webcam_image(value)
    if session is None:
        session = new_live_session(models)
    if image is None:
        return LiveFrame(session, {}, {}, "", "waiting for the webcam")
    if not session.lock.acquire(blocking=False):  # the previous frame of this stream is still being fitted
        return LiveFrame(session, {}, {}, "", "busy: frame skipped")
    try:
        if session.landmarker is None:  # closed (expired): start again
            fresh = new_live_session(models)
            session.landmarker, session.fitter, session.previous = fresh.landmarker, fresh.fitter, None
            session.identity_targets, session.identity_fitted = [], False
        faces = session.landmarker(image)
        session.frames += 1
        if not faces:
            session.previous = None
            return LiveFrame(session, {}, {}, "", "no face in view")
        candidates = [mesh_to_68(d, contour=False) for d in faces]
        areas = [float(np.prod(np.ptp(box_from_points(lm).reshape(2, 2), axis=0))) for lm in candidates]
        lm = candidates[int(np.argmax(areas))]
        matrix = estimate_transform(five_points_from_68(lm), models.base.template)
        observed = transform_points(lm, matrix)
        note = _update_identity(models, session, observed)
        state = fit_frame(session.fitter, observed, session.previous)
        session.previous = state
    finally:
        session.lock.release()
    names = list(models.model.expression_names)
    weights = {n: float(np.clip(w, 0.0, 1.0)) for n, w in zip(names, state.weights)}
    top = dict(sorted(weights.items(), key=lambda kv: -kv[1])[:LIVE_TOP])
    pitch, yaw, roll = np.degrees(state.angles - session.points.pose_offset)
    pose = {"pitch": round(float(pitch), 1), "yaw": round(float(yaw), 1), "roll": round(float(roll), 1)}
    markdown = (f"| pitch | yaw | roll |\n|---|---|---|\n| {pitch:+.1f}° | {yaw:+.1f}° | {roll:+.1f}° |\n\n"
                f"landmark error {state.residual_px:.1f} px (224 crop)")
    return LiveFrame(session, top, pose, markdown, note, weights)


def _update_identity(models: AppModels, session: LiveSession, observed: np.ndarray) -> str:
    """Collect the first frames' points; once there are enough, fit one identity to them and refit from there."""
    from msma.track import FrameFitter, fit_identity

    if session.identity_fitted:
        return "identity fitted to your first frames"
    if session.frames % LIVE_IDENTITY_EVERY == 1 or LIVE_IDENTITY_EVERY == 1:
        session.identity_targets.append(observed)
    if len(session.identity_targets) < LIVE_IDENTITY_FRAMES:
        return (f"identity: the mean face for now (yours is fitted after {LIVE_IDENTITY_FRAMES} frames, "
                f"{len(session.identity_targets)} so far)")
    model = models.model
    identity, _ = fit_identity(model, np.stack(session.identity_targets), session.points, session.fitter.settings)
    session.fitter = FrameFitter(model, identity, session.fitter.settings, session.points)
    session.previous = None
    session.identity_fitted = True
    return "identity fitted to your first frames"


# ------------------------------------------------------------------------------------------------ UI
def build_video_tab(models: AppModels, ui: Callable[[Callable], Callable], gpu: Callable[[Callable], Callable],
                    warn: Callable[[list[str]], None]) -> None:
    """The Video tab (call inside ``gr.Tabs()``). ``ui`` maps handler errors to gr.Error, ``gpu`` is app.py's
    ZeroGPU decorator, ``warn`` shows warnings. Both events take a client's file, so both are public API endpoints
    whose handlers go through the upload gate (tests/test_app_security.py)."""
    import gradio as gr

    with gr.Tab("Video", id="video"):
        gr.Markdown(f"### A clip in, a facial performance out\nThe first **{MAX_CLIP_S:g} s** of the clip are "
                    f"tracked (frames downscaled to {VIDEO_MAX_SIDE} px, the largest face only); "
                    "`python -m msma track` has no limits.")
        state = gr.State(None, time_to_live=7200)
        with gr.Row():
            with gr.Column(scale=1):
                clip = gr.Video(label="video clip", sources=["upload"], height=300, elem_id="video-clip")
                run = gr.Button("Track", variant="primary", elem_id="video-run")
                summary = gr.Markdown(elem_id="video-summary")
                downloads = gr.File(label="downloads: Live Link Face CSV, animated GLB, per-frame JSON / NPZ, "
                                          "overlay MP4", file_count="multiple", interactive=False,
                                    elem_id="video-downloads")
            with gr.Column(scale=2):
                viewer = gr.Model3D(label="animated face (drag to rotate)", height=380, elem_id="video-viewer",
                                    clear_color=(0.93, 0.93, 0.93, 1.0))
                preview = gr.Video(label="tracking preview", interactive=False, autoplay=True, loop=True,
                                   elem_id="video-preview")
                curves = gr.Plot(label="weights and head pose over time", elem_id="video-curves")

        @gpu
        @ui
        def on_track(value, session, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a bar
            if value is None:
                return session, None, None, None, [], ""
            res = track_clip(models, value, session, progress=lambda f, d: progress(f, desc=d))
            warn(res.warnings)
            return res.session, res.glb, res.preview_mp4, res.curves, res.downloads, res.summary

        run.click(on_track, [clip, state], [state, viewer, preview, curves, downloads, summary], preprocess=False,
                  api_name="track_video", concurrency_id="heavy")

        gr.Markdown("### Live webcam\nPer frame: the strongest expression weights and the head pose (mediapipe in "
                    f"video mode + the tracker's per-frame fit; the mean face until {LIVE_IDENTITY_FRAMES} frames "
                    "were seen, then an identity fitted to them; no smoothing, no gaze).")
        live_state = gr.State(None, time_to_live=LIVE_TTL_S, delete_callback=close_live_session)
        with gr.Row():
            cam = gr.Image(sources=["webcam"], streaming=True, label="webcam", height=300, elem_id="webcam")
            with gr.Column():
                live_weights = gr.Label(num_top_classes=LIVE_TOP, label="expression weights", elem_id="live-weights")
                live_pose = gr.Markdown(elem_id="live-pose")
                live_status = gr.Markdown(elem_id="live-status")

        @ui
        def on_frame(value, session):
            res = live_frame(models, value, session)
            return res.session, res.weights or None, res.pose_markdown, res.status

        cam.stream(on_frame, [cam, live_state], [live_state, live_weights, live_pose, live_status],
                   preprocess=False, api_name="webcam_frame", stream_every=0.1, time_limit=LIVE_TTL_S,
                   concurrency_limit=4, show_progress="hidden")
