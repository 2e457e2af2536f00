"""Write a tracked performance (`msma.track.TrackResult`) in formats other tools import.

* ``csv``  -- Live Link Face CSV (Unreal's LiveLinkFaceImporter, Blender / Unity CSV importers): the column layout
  the Live Link Face app records -- ``Timecode,BlendShapeCount``, the 52 ARKit blendshapes in PascalCase
  (``EyeBlinkLeft ... TongueOut``), then ``HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,
  RightEyeYaw,RightEyePitch,RightEyeRoll``; ``BlendShapeCount`` is 61; the timecode is ``HH:MM:SS:FF.fff``
  (FF = frame within the second at the clip's rounded frame rate, .fff = sub-frame fraction), starting at 0.
  ICT's split ``browInnerUp_L/_R`` and ``cheekPuff_L/_R`` are averaged into ARKit's single channels, ``TongueOut``
  is 0 (the model has no tongue shape). Rotations are radians with the Live Link Face app's signs (yaw > 0 turns
  towards the subject's right, pitch > 0 down; see `livelink_rotations`, which converts from this library's
  convention); eye roll is 0.
* ``glb``  -- the rigged face (`msma.export_rig`) with one animation: morph weights, head and eye rotations.
* ``npz`` / ``json`` -- every per-frame array (raw and smoothed) / a readable per-frame document.
* ``mp4``  -- a preview: the video with the fitted mesh, landmarks and the strongest weights drawn over it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from msma.export import to_arkit52

__all__ = [
    "LIVE_LINK_BLENDSHAPES",
    "LIVE_LINK_HEADER",
    "PERFORMANCE_FORMATS",
    "export_animated_glb",
    "export_livelink_csv",
    "export_overlay_mp4",
    "export_performance",
    "export_performance_json",
    "export_performance_npz",
    "livelink_rotations",
    "livelink_timecode",
]

# Column order of a Live Link Face recording (52 ARKit shapes; note JawRight before JawLeft, MouthRight before
# MouthLeft, unlike Apple's documentation order).
LIVE_LINK_BLENDSHAPES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)  # fmt: skip
LIVE_LINK_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                       "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LIVE_LINK_HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *LIVE_LINK_BLENDSHAPES, *LIVE_LINK_ROTATIONS)
PERFORMANCE_FORMATS = ("csv", "glb", "npz", "json", "mp4")
SCHEMA = "msma.performance"
SCHEMA_VERSION = "1.0"


def livelink_timecode(t: float, fps: float) -> str:
    """Seconds -> ``HH:MM:SS:FF.fff`` at ``fps`` (rounded to whole frames per second, non-drop)."""
    rate = max(1, int(round(fps)))
    frames_total = max(0.0, float(t)) * rate
    whole = int(math.floor(frames_total + 1e-9))
    milli = int(round((frames_total - whole) * 1000))
    if milli >= 1000:
        whole, milli = whole + 1, 0
    seconds, frame = divmod(whole, rate)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours:02d}:{minute:02d}:{sec:02d}:{frame:02d}.{milli:03d}"


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def livelink_rotations(angles: np.ndarray, gaze: np.ndarray) -> list[float]:
    """This library's head (pitch, yaw, roll) and eye (2, 2) (yaw, pitch) radians -> the 9 Live Link Face columns
    ``HeadYaw, HeadPitch, HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll``.

    Ours (`msma.track`, +y up, +z out of the face): head ``R = Rz(roll) Ry(yaw) Rx(pitch)``, so head yaw > 0 turns
    the face towards its own left, head pitch > 0 turns it down, roll > 0 is counter-clockwise seen from the camera;
    eye yaw > 0 looks towards the face's left, eye pitch > 0 up.

    Live Link Face's, measured on two recordings made with the app (github.com/alexdjulin/LiveLinkFace-CSV-Retarget-
    For-Motionbuilder, anim/alex_rom_3.csv and alex_rom_4.csv, 4030 and 3809 frames; numbers from
    ``scripts/livelink_csv_conventions.py``): the eye columns are **radians** (yaw/pitch span -0.61..+0.63, ~0.6 per
    unit of a full eyeLook* weight = 35 degrees; neither degrees nor a -1..1 scale), **pitch > 0 looks down**
    (LeftEyePitch vs EyeLookDown - EyeLookUp: r = +0.996 / +0.995) and **yaw > 0 looks towards the subject's right**
    for both eyes (LeftEyeYaw vs EyeLookIn - EyeLookOut, RightEyeYaw vs EyeLookOut - EyeLookIn: r = +0.999). Both
    signs are those of Unreal's FRotator (yaw > 0 turns right, pitch > 0 raises the +X axis) of the ARKit transform
    in Unreal axes (X = -z, Y = x, Z = y), the face's forward +z being -X. Those recordings have head rotation
    switched off (all zeros), so the head columns follow the same rule -- HeadYaw > 0 turns the head towards the
    subject's right, HeadPitch > 0 down, HeadRoll > 0 tips the top of the head towards the subject's left
    (clockwise seen from the camera) -- inferred, not measured; the unit (radians) agrees with the -1..1 range
    quoted for the app's head values (nmfisher/blender_livelinkface issue #3).
    """
    pitch, yaw, roll = (float(v) for v in angles)
    (left_yaw, left_pitch), (right_yaw, right_pitch) = np.asarray(gaze, np.float64)
    return [-yaw, pitch, -roll, -left_yaw, -left_pitch, 0.0, -right_yaw, -right_pitch, 0.0]


def livelink_rows(face, times: np.ndarray, fps: float) -> list[list[str]]:
    """Rows (strings) of the Live Link Face CSV for one `FaceTrack`."""
    rows = []
    for i, t in enumerate(times):
        arkit = {_pascal(k): v for k, v in to_arkit52(dict(zip(face.names, face.weights[i]))).items()}
        values = [arkit.get(name, 0.0) for name in LIVE_LINK_BLENDSHAPES]
        values += livelink_rotations(face.angles[i], face.gaze[i])
        rows.append([livelink_timecode(t, fps), str(len(LIVE_LINK_BLENDSHAPES) + len(LIVE_LINK_ROTATIONS))]
                    + [f"{float(v):.6f}" for v in values])
    return rows


def export_livelink_csv(result, face, path: str | os.PathLike) -> Path:
    """Live Link Face CSV of one tracked face (layout in the module docstring)."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LIVE_LINK_HEADER)
        writer.writerows(livelink_rows(face, result.times, result.fps or 30.0))
    return path


def export_performance_npz(result, face, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, times=result.times, valid=face.valid, names=np.array(face.names),
        arkit_names=np.array(LIVE_LINK_BLENDSHAPES), weights=face.weights, weights_raw=face.weights_raw,
        angles=face.angles, angles_raw=face.angles_raw, translation=face.translation, gaze=face.gaze,
        gaze_raw=face.gaze_raw, landmarks68=face.landmarks68, iris=face.iris, crop_matrix=face.crop_matrix,
        identity=face.identity, residual_px=face.residual_px, keyframes=np.array(face.keyframes),
        fps=result.fps, frame_size=np.array(result.frame_size), scale=result.scale,
    )
    return path


def performance_payload(result, face) -> dict:
    frames = []
    for i, t in enumerate(result.times):
        pitch, yaw, roll = np.degrees(face.angles[i])
        gaze = np.degrees(face.gaze[i])
        frames.append({
            "frame": i, "time": round(float(t), 6), "valid": bool(face.valid[i]),
            "blendshapes": {n: round(float(w), 5) for n, w in zip(face.names, face.weights[i])},
            "head_pose_deg": {"pitch": round(float(pitch), 3), "yaw": round(float(yaw), 3),
                              "roll": round(float(roll), 3)},
            "gaze_deg": {"left": {"yaw": round(float(gaze[0, 0]), 3), "pitch": round(float(gaze[0, 1]), 3)},
                         "right": {"yaw": round(float(gaze[1, 0]), 3), "pitch": round(float(gaze[1, 1]), 3)}},
        })
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "source": result.source, "face": face.index,
        "fps": result.fps, "variable_frame_rate": result.variable_frame_rate, "n_frames": result.n_frames,
        "tracked_frames": face.n_valid, "complete": result.complete, "messages": result.messages,
        "identity_keyframes": face.keyframes,
        "conventions": "angles: R = Rz(roll) Ry(yaw) Rx(pitch), +y up, +z towards the camera; eye yaw > 0 towards "
                       "the face's left, pitch > 0 up; blendshape weights in [0, 1] (ICT names); frames without a "
                       "face (valid = false) hold the nearest tracked values",
        "frames": frames,
    }


def export_performance_json(result, face, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(performance_payload(result, face)))
    return path


def export_animated_glb(result, face, path: str | os.PathLike, texture_format: str = "jpeg") -> Path:
    """The face's rig with the performance as its animation (weights, head rotation, eye rotations)."""
    from msma.export_rig import RigAnimation, export_rigged_glb

    if face.rig is None:
        raise ValueError("this face track has no rig")
    head, eyes = face.quaternions()
    animation = RigAnimation(result.times, face.weights, head_rotation=head,
                             eye_rotation=eyes if face.rig.eyes is not None else None)
    return export_rigged_glb(face.rig, path, texture_format=texture_format, animation=animation)


def export_overlay_mp4(result, video_path: str | os.PathLike, path: str | os.PathLike,
                       max_side: int | None = None, progress: bool = False) -> Path:
    """The clip again with every tracked face's posed mesh (wireframe), landmarks and top weights drawn on it."""
    import cv2
    from tqdm import tqdm

    from msma.align import invert_affine, transform_points
    from msma.overlay import draw_overlay
    from msma.video import VideoDecodeError, VideoWriter, open_video

    path = Path(path)
    width, height = result.frame_size
    side = max_side if max_side is not None else (max(width, height) if result.scale < 1 else None)
    fps = result.fps or 30.0
    faces = [f for f in result.faces if f.rig is not None]
    skin = {}
    for f in faces:
        tri = f.rig.mesh.faces
        if f.rig.eyes is not None:
            tri = tri[~np.isin(tri, np.concatenate(f.rig.eyes)).all(1)]
        skin[f.index] = tri
    with open_video(video_path, max_side=side) as video, VideoWriter(path, fps, width, height) as writer:
        frames = iter(video)
        for i in tqdm(range(result.n_frames), desc="preview", unit="frame", disable=not progress, leave=False):
            try:
                frame = next(frames)
            except (StopIteration, VideoDecodeError):
                break
            image = frame.image
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            for f in faces:
                if not f.valid[i]:
                    continue
                verts = f.rig.posed_vertices(f.weights[i])
                rotation = _rotation(f.angles[i] + f.pose_offset)  # the pose that matches the image
                cam = verts @ rotation.T + f.translation[i]
                camera = f.camera
                depth = camera.distance - cam[:, 2]
                crop = np.stack([camera.center + camera.focal * cam[:, 0] / depth,
                                 camera.center - camera.focal * cam[:, 1] / depth], 1)
                inverse = invert_affine(f.crop_matrix[i])
                projected = np.concatenate([transform_points(crop, inverse), depth[:, None]], 1)
                image = draw_overlay(image, projected, skin[f.index], landmarks68=f.landmarks68[i], alpha=0.35,
                                     wireframe=True, legend=False)
                _draw_weights(image, f, i)
            if not any(f.valid[i] for f in result.faces):
                cv2.putText(image, "no face", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 80, 80), 2, cv2.LINE_AA)
            writer.write(image)
    return path


def _rotation(angles: np.ndarray) -> np.ndarray:
    from msma.export import euler_to_matrix

    return euler_to_matrix(angles)


def _draw_weights(image: np.ndarray, face, i: int, top: int = 5) -> None:
    import cv2

    order = np.argsort(-face.weights[i])[:top]
    pitch, yaw, roll = np.degrees(face.angles[i])
    lines = [f"face {face.index}  yaw {yaw:+.0f}  pitch {pitch:+.0f}  roll {roll:+.0f}"]
    lines += [f"{face.names[k]:<16} {face.weights[i, k]:.2f}" for k in order if face.weights[i, k] > 0.05]
    x0 = 8
    y0 = 18 + face.index * (18 * (top + 1) + 6)
    for j, line in enumerate(lines):
        y = y0 + 18 * j
        cv2.putText(image, line, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, line, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def export_performance(result, out_dir: str | os.PathLike, video_path: str | os.PathLike | None = None,
                       stem: str = "performance", formats: Sequence[str] = PERFORMANCE_FORMATS,
                       progress: bool = False) -> dict[str, Path]:
    """Every requested format for every tracked face: ``{stem}_face{k}.{csv,glb,npz,json}`` and one
    ``{stem}_overlay.mp4`` (needs ``video_path``). Returns {"face{k}.csv": path, ..., "mp4": path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = [f for f in formats if f not in PERFORMANCE_FORMATS]
    if unknown:
        raise ValueError(f"unknown performance formats {unknown}; use {PERFORMANCE_FORMATS}")
    written: dict[str, Path] = {}
    for face in result.faces:
        base = out_dir / f"{stem}_face{face.index}"
        if "csv" in formats:
            written[f"face{face.index}.csv"] = export_livelink_csv(result, face, base.with_suffix(".csv"))
        if "npz" in formats:
            written[f"face{face.index}.npz"] = export_performance_npz(result, face, base.with_suffix(".npz"))
        if "json" in formats:
            written[f"face{face.index}.json"] = export_performance_json(result, face, base.with_suffix(".json"))
        if "glb" in formats and face.rig is not None:
            written[f"face{face.index}.glb"] = export_animated_glb(result, face, base.with_suffix(".glb"))
    if "mp4" in formats and video_path is not None:
        written["mp4"] = export_overlay_mp4(result, video_path, out_dir / f"{stem}_overlay.mp4", progress=progress)
    return written
