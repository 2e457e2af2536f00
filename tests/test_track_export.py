"""Performance outputs of a known (synthetic) track: Live Link Face CSV read back by a reader written from the
published column layout, NPZ / JSON, the animated GLB."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from msma.face_model import Camera, euler_to_matrix
from msma.track import FaceTrack, TrackResult, gaze_to_eye_look
from msma.track_export import export_performance, livelink_rotations, livelink_timecode

# The Live Link Face app's CSV layout as published (Epic's Live Link Face recordings, as read by Unreal's
# LiveLinkFaceImporter and the open-source importers): written out here independently of msma.track_export.
PUBLISHED_LAYOUT = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,"
    "MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,"
    "MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,"
    "BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,"
    "CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,"
    "LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
).split(",")
TIMECODE = re.compile(r"^(\d{2}):(\d{2}):(\d{2}):(\d{2})\.(\d{3})$")


def read_live_link_csv(path, fps: float) -> dict:
    """Minimal Live Link Face CSV reader: header check, timecode -> seconds, 61 values per row."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    if header != PUBLISHED_LAYOUT:
        raise ValueError("not the Live Link Face layout")
    times, values = [], []
    for row in body:
        match = TIMECODE.match(row[0])
        if match is None:
            raise ValueError(f"bad timecode {row[0]!r}")
        h, m, s, f, sub = (int(g) for g in match.groups())
        times.append(h * 3600 + m * 60 + s + (f + sub / 1000) / fps)
        if int(row[1]) != 61 or len(row) != 63:
            raise ValueError("a row must hold BlendShapeCount = 61 values")
        values.append([float(v) for v in row[2:]])
    return {"times": np.array(times), "values": np.array(values), "columns": header[2:]}


@pytest.fixture(scope="module")
def result(ict):
    from msma.export_rig import Rig

    n = 45
    names = list(ict.expression_names)
    t = np.arange(n) / 30.0
    weights = np.zeros((n, len(names)))
    weights[:, names.index("jawOpen")] = 0.5 + 0.5 * np.sin(2 * np.pi * t)
    weights[:, names.index("browInnerUp_L")] = 0.2
    weights[:, names.index("browInnerUp_R")] = 0.6
    weights[:, names.index("cheekPuff_L")] = 0.4
    weights[:, names.index("mouthRight")] = 0.7
    angles = np.stack([0.1 * np.ones(n), 0.3 * np.sin(t), np.zeros(n)], 1)
    gaze = np.zeros((n, 2, 2))
    gaze[:, :, 0] = 0.2
    valid = np.ones(n, bool)
    valid[10:13] = False
    rig = Rig.from_model(ict, weights=weights[0])
    face = FaceTrack(
        index=0, valid=valid, landmarks68=np.zeros((n, 68, 2)), iris=np.zeros((n, 2, 2)),
        crop_matrix=np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1)), names=names,
        identity=np.zeros(ict.n_identity), weights_raw=weights, weights=weights, angles_raw=angles, angles=angles,
        translation=np.zeros((n, 3)), gaze_raw=gaze, gaze=gaze, residual_px=np.zeros(n), keyframes=[0, 20],
        camera=Camera(distance=12.0), rig=rig,
    )
    return TrackResult("synthetic", None, t, (64, 48), 1.0, 30.0, False, [face], True)


def test_timecode_format():
    assert livelink_timecode(0.0, 30) == "00:00:00:00.000"
    assert livelink_timecode(1.5, 30) == "00:00:01:15.000"
    assert livelink_timecode(3661 + 2.25 / 30, 30) == "01:01:01:02.250"
    assert livelink_timecode(1 / 60, 30) == "00:00:00:00.500"  # a sub-frame sample (variable frame rate)


def test_live_link_csv_reads_back(result, tmp_path):
    files = export_performance(result, tmp_path, stem="take", formats=("csv",))
    data = read_live_link_csv(files["face0.csv"], fps=30)
    col = {name: i for i, name in enumerate(data["columns"])}
    face = result.faces[0]
    names = face.names
    assert np.allclose(data["times"], result.times, atol=1e-3)
    assert data["values"].shape == (45, 61)
    assert np.allclose(data["values"][:, col["JawOpen"]], face.weights[:, names.index("jawOpen")], atol=1e-5)
    assert np.allclose(data["values"][:, col["BrowInnerUp"]], 0.4, atol=1e-5)  # mean of ICT's L and R
    assert np.allclose(data["values"][:, col["CheekPuff"]], 0.2, atol=1e-5)
    assert np.allclose(data["values"][:, col["MouthRight"]], 0.7, atol=1e-5)
    assert np.all(data["values"][:, col["MouthLeft"]] == 0)
    assert np.all(data["values"][:, col["TongueOut"]] == 0)
    # Live Link Face signs (yaw > 0 towards the subject's right, pitch > 0 down), radians
    assert np.allclose(data["values"][:, col["HeadYaw"]], -face.angles[:, 1], atol=1e-5)
    assert np.allclose(data["values"][:, col["HeadPitch"]], 0.1, atol=1e-5)
    assert np.allclose(data["values"][:, col["LeftEyeYaw"]], -0.2, atol=1e-5)
    blend = data["values"][:, :52]
    assert blend.min() >= 0 and blend.max() <= 1


def _track(names, weights, angles, gaze) -> TrackResult:
    n = len(weights)
    face = FaceTrack(
        index=0, valid=np.ones(n, bool), landmarks68=np.zeros((n, 68, 2)), iris=np.zeros((n, 2, 2)),
        crop_matrix=np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (n, 1, 1)), names=names,
        identity=np.zeros(1), weights_raw=weights, weights=weights, angles_raw=angles, angles=angles,
        translation=np.zeros((n, 3)), gaze_raw=gaze, gaze=gaze, residual_px=np.zeros(n), keyframes=[0],
        camera=Camera(distance=12.0),
    )
    return TrackResult("synthetic", None, np.arange(n) / 30.0, (64, 48), 1.0, 30.0, False, [face], True)


def test_live_link_eye_rotations_match_the_app(ict, tmp_path):
    """The relation measured on real Live Link Face recordings (scripts/livelink_csv_conventions.py on two takes
    recorded with the app, see msma.track_export.livelink_rotations): eye pitch rises with EyeLookDown - EyeLookUp
    (r = +0.996), LeftEyeYaw with EyeLookIn - EyeLookOut and RightEyeYaw with EyeLookOut - EyeLookIn (r = +0.999),
    about 0.6 rad per unit weight. Our CSV, with the eyeLook* weights the tracker derives from the same gaze, must
    show the same signs and radians (degrees would give ~35 per unit)."""
    names = list(ict.expression_names)
    rng = np.random.default_rng(0)
    n = 120
    gaze = np.stack([rng.uniform(-0.5, 0.5, (n, 2)), rng.uniform(-0.35, 0.35, (n, 2))], -1)  # (n, eye, yaw/pitch)
    weights = np.zeros((n, len(names)))
    for i in range(n):
        for name, value in gaze_to_eye_look(gaze[i]).items():
            weights[i, names.index(name)] = value
    files = export_performance(_track(names, weights, np.zeros((n, 3)), gaze), tmp_path, formats=("csv",))
    data = read_live_link_csv(files["face0.csv"], fps=30)
    v = {name: data["values"][:, i] for i, name in enumerate(data["columns"])}
    for side, towards_right in (("Left", v["EyeLookInLeft"] - v["EyeLookOutLeft"]),
                                ("Right", v["EyeLookOutRight"] - v["EyeLookInRight"])):
        down = v[f"EyeLookDown{side}"] - v[f"EyeLookUp{side}"]
        assert np.corrcoef(v[f"{side}EyePitch"], down)[0, 1] > 0.9
        assert np.corrcoef(v[f"{side}EyeYaw"], towards_right)[0, 1] > 0.9
        for column, driver in ((f"{side}EyePitch", down), (f"{side}EyeYaw", towards_right)):
            assert 0.2 < np.polyfit(driver, v[column], 1)[0] < 1.2  # radians per unit weight
        assert np.all(v[f"{side}EyeRoll"] == 0)


def test_live_link_head_rotation_signs():
    """Head columns: radians, HeadYaw > 0 turns the face towards the subject's right, HeadPitch > 0 down, HeadRoll > 0
    tips the top of the head towards the subject's left -- checked against where our own rotation sends the face's
    forward (+z) and up (+y) axes (+x = the face's left)."""
    import torch

    def axes(angles):
        rotation = euler_to_matrix(torch.tensor([angles], dtype=torch.float64))[0].numpy()
        return rotation @ [0.0, 0.0, 1.0], rotation @ [0.0, 1.0, 0.0]

    no_gaze = np.zeros((2, 2))
    forward, _ = axes([0.0, 0.3, 0.0])
    assert forward[0] > 0  # our yaw 0.3 turns the face to its own left ...
    assert livelink_rotations([0.0, 0.3, 0.0], no_gaze)[0] == pytest.approx(-0.3)  # ... = HeadYaw -0.3 rad
    forward, _ = axes([0.2, 0.0, 0.0])
    assert forward[1] < 0  # our pitch 0.2 turns it down ...
    assert livelink_rotations([0.2, 0.0, 0.0], no_gaze)[1] == pytest.approx(0.2)  # ... = HeadPitch +0.2
    _, up = axes([0.0, 0.0, 0.1])
    assert up[0] < 0  # our roll 0.1 tips the top of the head to the face's right ...
    assert livelink_rotations([0.0, 0.0, 0.1], no_gaze)[2] == pytest.approx(-0.1)  # ... = HeadRoll -0.1
    eyes = livelink_rotations(np.zeros(3), [[0.1, 0.2], [-0.3, -0.05]])[3:]
    assert eyes == pytest.approx([-0.1, -0.2, 0.0, 0.3, 0.05, 0.0])


def test_npz_json_and_animated_glb(result, tmp_path):
    import pygltflib

    files = export_performance(result, tmp_path, stem="take", formats=("npz", "json", "glb"))
    data = np.load(files["face0.npz"])
    assert data["weights"].shape == (45, 53) and data["valid"].sum() == 42
    doc = json.loads(files["face0.json"].read_text())
    assert doc["schema"] == "msma.performance" and len(doc["frames"]) == 45
    assert doc["frames"][11]["valid"] is False
    jaw = result.faces[0].names.index("jawOpen")
    assert doc["frames"][5]["blendshapes"]["jawOpen"] == pytest.approx(result.faces[0].weights[5, jaw], abs=1e-4)
    gltf = pygltflib.GLTF2().load(str(files["face0.glb"]))
    (animation,) = gltf.animations
    targets = {(gltf.nodes[c.target.node].name, c.target.path) for c in animation.channels}
    assert {("face", "weights"), ("head", "rotation"), ("eyeLeft", "rotation"), ("eyeRight", "rotation")} == targets


def test_unknown_format_is_rejected(result, tmp_path):
    with pytest.raises(ValueError, match="unknown performance formats"):
        export_performance(result, tmp_path, formats=("fbx",))
