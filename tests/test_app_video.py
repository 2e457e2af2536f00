"""The app's Video tab handlers (msma/app/video.py) called directly: a short generated clip (the example portrait
drifting in front of a background) tracked into every output, bad clips turned into readable AppErrors, and the
webcam stream handler fitting weights to single frames."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_track_video import make_clip, portrait

from msma import app as H
from msma.app import video as V
from msma.track import TrackSettings
from msma.track_export import LIVE_LINK_HEADER

FAST = TrackSettings(max_side=V.VIDEO_MAX_SIDE, largest=True, keyframes=2, texture=False)


@pytest.fixture(scope="module")
def models() -> H.AppModels:
    from msma.api import Reconstructor

    rec = Reconstructor(method="fitting", photometric=False, texture_size=128, device="cpu")
    return H.AppModels({"fitting": H.Engine("fitting", "fitting", rec, "fitting", fast=rec)}, "fitting")


@pytest.fixture()
def outputs(tmp_path, monkeypatch):
    root = tmp_path / "app_out"
    from msma.app import state

    monkeypatch.setattr(state, "OUTPUT_ROOT", root)
    return root


def test_clip_is_tracked_into_every_output(models, outputs, tmp_path):
    clip = make_clip(tmp_path / "my take.mp4", n=20, face=lambda i: not 8 <= i < 12)
    stages = []
    res = V.track_clip(models, str(clip), settings=FAST, progress=lambda f, d: stages.append((f, d)))
    assert set(res.files) == {"csv", "glb", "json", "npz", "mp4"}
    for path in res.downloads + [res.glb, res.preview_mp4]:
        assert Path(path).is_file() and Path(path).resolve().is_relative_to(outputs.resolve()), path
    assert Path(res.glb).name == "my_take.glb"  # named after the upload, made file-name safe
    with open(res.files["csv"]) as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == LIVE_LINK_HEADER and len(rows) == 21 and rows[1][1] == "61"
    frames = json.loads(Path(res.files["json"]).read_text())["frames"]
    assert len(frames) == 20 and [f["valid"] for f in frames][8:12] == [False] * 4
    # the face leaving the frame is said, not hidden: a warning, gaps in the curves, a count in the summary
    assert any("no face in 4 of 20 frames" in w for w in res.warnings)
    assert res.tracked_frames == 16 and "face tracked in 16 of 20 frames" in res.summary
    jaw = res.curves.data[0]
    assert jaw.name == "jawOpen" and np.isnan(np.asarray(jaw.y[8:12], float)).all()
    assert {t.name for t in res.curves.data} >= {"mouthSmile_L", "eyeBlink_R", "browInnerUp", "head yaw"}
    assert stages[0][0] == 0.0 and stages[-1] == (1.0, "done") and any(d == "landmarks" for _, d in stages)
    assert [f for f, _ in stages] == sorted(f for f, _ in stages)
    # a second run of the same session writes into a fresh folder of the same session
    short = make_clip(tmp_path / "my take.mkv", n=6)
    again = V.track_clip(models, str(short), session=res.session, settings=FAST, preview=False)
    assert Path(again.glb).parent != Path(res.glb).parent
    assert Path(again.glb).parent.parent == Path(res.session.workdir) and "mp4" not in again.files


def test_long_big_variable_frame_rate_clip_is_cut_downscaled_and_said(models, outputs, tmp_path, monkeypatch):
    times = np.cumsum([0] + [1 / 30 if i % 3 else 1 / 10 for i in range(9)])
    clip = make_clip(tmp_path / "big.mp4", n=10, size=(1280, 720), times=times)
    small = TrackSettings(max_side=480, largest=True, keyframes=2, texture=False)
    res = V.track_clip(models, str(clip), settings=small, preview=False, max_seconds=0.35)
    assert res.n_frames == 7  # t = 0 ... 0.333 s of the 0.5 s clip
    assert any("Only the first 0.35 s of big.mp4 were tracked" in w for w in res.warnings)
    assert any("big.mp4 is 1280×720 px: frames were downscaled to 480×270" in w for w in res.warnings)
    assert any("variable frame rate" in w for w in res.warnings) and "variable frame rate" in res.summary
    monkeypatch.setattr(V, "MAX_SOURCE_SIDE", 1000)
    with pytest.raises(H.AppError, match="videos up to 1000 px on the longer side"):
        V.track_clip(models, str(clip), settings=small)


def test_truncated_clip_keeps_the_decoded_frames(models, outputs, tmp_path):
    data = make_clip(tmp_path / "full.mkv", n=30).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.85)])
    res = V.track_clip(models, str(cut), settings=FAST)
    assert 5 < res.n_frames < 30
    assert any("cut.mkv" in w and ("decoding stopped" in w or "truncated" in w) for w in res.warnings), res.warnings
    assert not any(str(tmp_path) in w for w in res.warnings)
    assert len(Path(res.files["csv"]).read_text().splitlines()) == res.n_frames + 1 and "mp4" in res.files


@pytest.mark.parametrize("content, message", [
    (b"", "long.mp4 is empty"),
    (b"this is not a video at all" * 40, "long.mp4 cannot be opened as a video"),
])
def test_unusable_files_give_clear_errors(models, outputs, tmp_path, content, message):
    bad = tmp_path / "long.mp4"
    bad.write_bytes(content)
    with pytest.raises(H.AppError, match=message) as info:
        V.track_clip(models, str(bad), settings=FAST)
    assert str(tmp_path) not in str(info.value)  # the server's path is not echoed


def test_zero_frame_and_faceless_clips(models, outputs, tmp_path):
    full = make_clip(tmp_path / "full.mkv", n=6)
    header = tmp_path / "header.mkv"
    header.write_bytes(full.read_bytes()[:600])  # the container header and no decodable frame
    with pytest.raises(H.AppError, match="header.mkv"):
        V.track_clip(models, str(header), settings=FAST)
    empty = make_clip(tmp_path / "wall.mp4", n=6, face=lambda i: False)
    with pytest.raises(H.AppError, match="No face found in wall.mp4: no face found in any of its 6 frames"):
        V.track_clip(models, str(empty), settings=FAST)
    with pytest.raises(H.AppError, match="upload a video first"):
        V.track_clip(models, None)
    assert not any(outputs.rglob("*.*"))  # nothing written for a failed clip


def test_client_payloads_go_through_the_upload_gate(models, outputs, tmp_path):
    secret = make_clip(tmp_path / "secret.mp4", n=4)
    for payload in ({"path": str(secret)}, {"path": str(secret), "meta": {"_type": "gradio.FileData"}}):
        with pytest.raises(H.AppError, match="upload it again"):
            V.track_clip(models, payload, settings=FAST)
    with pytest.raises(H.AppError, match="upload it again"):
        V.live_frame(models, {"path": str(tmp_path / "frame.png"), "url": "http://x/frame.png"})


def _data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_webcam_frames_give_weights_and_pose(models):
    frame = portrait(360)
    blank = np.full_like(frame, 120)
    session = None
    seen = []
    try:
        for i in range(V.LIVE_IDENTITY_EVERY * V.LIVE_IDENTITY_FRAMES + 1):
            res = V.live_frame(models, {"url": _data_url(frame)} if i % 2 else frame, session)
            session = res.session
            seen.append(res)
        first, last = seen[0], seen[-1]
        assert "mean face" in first.status and "identity fitted" in last.status
        for res in (first, last):
            assert len(res.weights) == V.LIVE_TOP and all(0 <= w <= 1 for w in res.weights.values())
            assert len(res.all_weights) == models.model.n_expression and set(res.pose) == {"pitch", "yaw", "roll"}
            assert abs(res.pose["yaw"]) < 25 and "pitch" in res.pose_markdown
        assert session.identity_fitted and np.abs(session.fitter.base).sum() > 0
        gone = V.live_frame(models, blank, session)
        assert gone.weights == {} and gone.status == "no face in view" and session.previous is None
        for bad in ({"url": "data:image/jpeg;base64,@@not-base64@@"}, {"url": "data:image/png;base64,AAAA"}):
            with pytest.raises(H.AppError, match="not a usable image"):
                V.live_frame(models, bad, session)
        assert V.live_frame(models, None, session).status == "waiting for the webcam"
    finally:
        V.close_live_session(session)
    assert session.landmarker is None
