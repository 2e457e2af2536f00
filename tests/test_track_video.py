"""Video tracking end to end on small generated clips (a photo moved around), and every kind of bad input:
no face, a face leaving the frame, corrupt / empty / truncated files, huge frames, variable frame rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msma.cli import main
from msma.landmarks import NoFaceError
from msma.track import FaceTracker, TrackSettings
from msma.video import VideoError, VideoWriter, open_video

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "examples" / "01_portrait.jpg"
CLI_FAST = ["--method", "fitting", "--no-photometric", "--no-progress", "--keyframes", "2"]


def portrait(height: int) -> np.ndarray:
    img = Image.open(PHOTO).convert("RGB")
    return np.asarray(img.resize((round(img.width * height / img.height), height), Image.BILINEAR))


def make_clip(path: Path, n: int = 24, size: tuple[int, int] = (320, 240), face=lambda i: True, times=None,
              fps: float = 30.0) -> Path:
    """A clip of the example portrait drifting a few pixels per frame; frames where face(i) is False show only
    the background colour."""
    w, h = size
    base = portrait(h)
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps, w, h) as writer:
        for i in range(n):
            frame = np.full((h, w, 3), (60, 90, 160), np.uint8)
            if face(i):
                x = int((w - base.shape[1]) / 2 + 6 * np.sin(i / 4))
                x0, x1 = max(0, x), min(w, x + base.shape[1])
                frame[:, x0:x1] = base[:, x0 - x : x1 - x]
            frame = np.clip(frame.astype(int) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
            writer.write(frame, time=None if times is None else times[i])
    return path


@pytest.fixture(scope="module")
def tracker():
    from msma.api import Reconstructor

    reconstructor = Reconstructor(method="fitting", photometric=False, texture_size=128)
    return FaceTracker(reconstructor, TrackSettings(keyframes=2, texture=False))


def test_cli_track_writes_every_output(tmp_path):
    clip = make_clip(tmp_path / "take.mp4")
    out = tmp_path / "out"
    assert main(["track", str(clip), "-o", str(out), *CLI_FAST]) == 0
    for name in ("take_face0.csv", "take_face0.glb", "take_face0.npz", "take_face0.json", "take_overlay.mp4",
                 "take_track_summary.json"):
        assert (out / name).is_file(), name
    rows = (out / "take_face0.csv").read_text().splitlines()
    assert len(rows) == 25 and rows[0].startswith("Timecode,BlendShapeCount,EyeBlinkLeft")
    with open_video(out / "take_overlay.mp4") as video:
        assert sum(1 for _ in video) == 24
    data = np.load(out / "take_face0.npz")
    assert data["valid"].all()
    # the photo only drifts sideways: head pose nearly constant, and the raw fit jitters more than the smoothed one
    assert np.degrees(np.ptp(data["angles"], axis=0)).max() < 6
    jitter = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731
    assert jitter(data["weights"]) < jitter(data["weights_raw"])


def test_face_leaving_the_frame_keeps_partial_results(tracker, tmp_path):
    clip = make_clip(tmp_path / "leave.mp4", n=30, face=lambda i: not 10 <= i < 18)
    result = tracker.track_video(clip, progress=False)
    (face,) = result.faces
    assert result.n_frames == 30 and result.complete
    assert not face.valid[11:17].any() and face.valid[:9].all() and face.valid[19:].all()
    assert any("no face in" in m for m in result.messages)
    np.testing.assert_allclose(face.weights[12], face.weights[face.valid.nonzero()[0][face.valid.nonzero()[0] < 12]
                                                              [-1]])  # held from the last tracked frame


def test_no_face_anywhere(tracker, tmp_path, capsys):
    clip = make_clip(tmp_path / "empty.mp4", n=8, face=lambda i: False)
    with pytest.raises(NoFaceError, match="no face found in any of its 8 frames"):
        tracker.track_video(clip, progress=False)
    assert main(["track", str(clip), "-o", str(tmp_path / "o"), *CLI_FAST]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "no face found" in err and "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is not a video at all" * 40, "cannot be opened as a video"),
    (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "cannot be opened as a video"),
])
def test_unusable_files_give_clear_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        open_video(path)
    assert main(["track", str(path), "-o", str(tmp_path / "o"), *CLI_FAST]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    assert main(["track", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o"), *CLI_FAST]) == 1
    assert "no such file" in capsys.readouterr().err


def test_truncated_file_keeps_decoded_frames(tracker, tmp_path):
    full = make_clip(tmp_path / "full.mkv", n=40)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.85)])
    result = tracker.track_video(cut, progress=False)
    assert 5 < result.n_frames < 40
    assert result.faces[0].valid.mean() > 0.8
    assert any("truncated" in m for m in result.messages)
    # nothing decodable at all (only the header survives) is an error, not an empty result
    head = tmp_path / "head.mkv"
    head.write_bytes(data[:600])
    with pytest.raises(VideoError):
        tracker.track_video(head, progress=False)


def test_huge_frames_are_downscaled(tracker, tmp_path):
    clip = make_clip(tmp_path / "big.mp4", n=4, size=(3840, 2160))
    result = tracker.track_video(clip, progress=False)
    assert max(result.frame_size) == 1280 and result.scale == pytest.approx(1 / 3, abs=1e-3)
    assert any("downscaled from 3840x2160" in m for m in result.messages)
    assert result.faces[0].valid.all()


def test_variable_frame_rate_uses_timestamps(tracker, tmp_path):
    times = np.cumsum([0] + [1 / 30 if i % 3 else 1 / 10 for i in range(23)])
    clip = make_clip(tmp_path / "vfr.mp4", n=24, times=times)
    result = tracker.track_video(clip, progress=False)
    assert result.variable_frame_rate
    np.testing.assert_allclose(result.times, times - times[0], atol=2e-3)
    assert any("variable frame rate" in m for m in result.messages)


def test_identity_is_the_photo_fitters_shared_identity_over_the_keyframes(tracker, tmp_path, monkeypatch):
    """The person's identity from a video is `Reconstructor.estimate(shared_identity=True)` on the keyframes (the
    photo fitter's priors and detector-offset correction), not the per-frame fit's weakly regularised
    `fit_identity`, which the per-frame fit still uses."""
    import msma.track as track

    calls = []
    real = tracker.reconstructor.estimate

    def spy(crops, landmarks, **kwargs):
        calls.append((len(crops), kwargs))
        out = real(crops, landmarks, **kwargs)
        calls[-1] += (out.identity[0].double().numpy(),)
        return out

    tracking, real_fit_identity = [], track.fit_identity

    def fit_identity(*args, **kwargs):  # the per-frame fit's own identity
        identity, states = real_fit_identity(*args, **kwargs)
        tracking.append(identity)
        return identity, states

    monkeypatch.setattr(tracker.reconstructor, "estimate", spy)
    monkeypatch.setattr(track, "fit_identity", fit_identity)
    result = tracker.track_video(make_clip(tmp_path / "id.mp4"), progress=False)
    [(n, kwargs, shared)] = calls
    face = result.faces[0]
    assert n == len(face.keyframes) and kwargs["shared_identity"] and kwargs["photometric"] is False
    assert kwargs["landmark_sources"] == ["mediapipe"] * n and kwargs["crop_dense"].shape == (n, 478, 2)
    assert np.allclose(face.identity, shared) and np.abs(face.identity).max() > 0
    # the per-frame fit keeps its own identity, which is not the person's
    assert len(tracking) == 1 and not np.allclose(tracking[0], shared)
    with pytest.raises(ValueError, match="identity"):
        FaceTracker(tracker.reconstructor, TrackSettings(identity="network"))
