"""Blendshape weights and head pose as JSON (ICT's 53 ARKit-named shapes, also mapped to Apple's 52 names)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

BLENDSHAPE_SCHEMA = "msma.blendshapes"
BLENDSHAPE_SCHEMA_VERSION = "1.0"

# Apple ARKit ARFaceAnchor.BlendShapeLocation names (52), in Apple's documentation order.
ARKIT52_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip


def euler_to_matrix(angles: Sequence[float]) -> np.ndarray:
    """(pitch, yaw, roll) radians -> 3x3 numpy rotation: `msma.face_model.euler_to_matrix` (the one definition)."""
    import torch

    from msma.face_model import euler_to_matrix as euler_to_matrix_batched

    return euler_to_matrix_batched(torch.tensor([[float(a) for a in angles]], dtype=torch.float64))[0].numpy()


def _weights_dict(weights) -> dict[str, float]:
    if isinstance(weights, Mapping):
        names, values = list(weights.keys()), list(weights.values())
    else:
        if len(weights) != 2:
            raise TypeError("weights must be a dict name -> value or a (names, values) pair")
        names, values = list(weights[0]), np.asarray(weights[1], dtype=np.float64).reshape(-1).tolist()
    if len(names) != len(values):
        raise ValueError(f"{len(names)} blendshape names but {len(values)} values")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("duplicate blendshape names")
    out = {}
    for name, value in zip(names, values):
        value = float(np.asarray(value, dtype=np.float64).reshape(()))
        out[name] = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
    return out


def to_arkit52(weights: Mapping[str, float]) -> dict[str, float]:
    """Map ICT-style names (``eyeBlink_L``, ``browInnerUp_L``/``_R``, ...) to Apple's 52 ARKit names.

    ``X_L``/``X_R`` become ``XLeft``/``XRight``; ARKit's single ``browInnerUp`` and ``cheekPuff`` take the
    mean of the left/right pair; names already in ARKit spelling pass through; missing ones (e.g.
    ``tongueOut`` for ICT) are 0.
    """
    mapped: dict[str, list[float]] = {}
    for name, value in weights.items():
        if name.endswith("_L"):
            key = name[:-2] + "Left"
        elif name.endswith("_R"):
            key = name[:-2] + "Right"
        else:
            key = name
        if key not in ARKIT52_NAMES:
            base = key.removesuffix("Left").removesuffix("Right")
            key = base if base in ARKIT52_NAMES else key
        mapped.setdefault(key, []).append(float(value))
    return {name: float(np.clip(np.mean(mapped[name]), 0, 1)) if name in mapped else 0.0 for name in ARKIT52_NAMES}


def blendshapes_payload(weights, pose=None, translation=None, unit_m: float = 0.1) -> dict:
    """The JSON document written by :func:`export_blendshapes_json` (see there)."""
    blendshapes = _weights_dict(weights)
    angles = np.zeros(3)
    trans = np.zeros(3)
    if pose is not None:
        if isinstance(pose, Mapping):
            angles = np.asarray(pose.get("angles", np.zeros(3)), dtype=np.float64).reshape(3)
            trans = np.asarray(pose.get("translation", np.zeros(3)), dtype=np.float64).reshape(3)
        elif isinstance(pose, (tuple, list)) and len(pose) == 2 and np.size(pose[0]) == 3:
            angles = np.asarray(pose[0], dtype=np.float64).reshape(3)  # (angles, translation | None)
            if pose[1] is not None:
                trans = np.asarray(pose[1], dtype=np.float64).reshape(3)
        else:
            pose = np.asarray(pose, dtype=np.float64).reshape(-1)
            if pose.size not in (3, 6):
                raise ValueError("pose must be (pitch, yaw, roll) or (pitch, yaw, roll, tx, ty, tz)")
            angles = pose[:3]
            if pose.size == 6:
                trans = pose[3:]
    if translation is not None:
        trans = np.asarray(translation, dtype=np.float64).reshape(3)
    if not (np.all(np.isfinite(angles)) and np.all(np.isfinite(trans))):
        raise ValueError("pose contains NaN or inf")
    names = ("pitch", "yaw", "roll")
    return {
        "schema": BLENDSHAPE_SCHEMA,
        "schema_version": BLENDSHAPE_SCHEMA_VERSION,
        "blendshape_count": len(blendshapes),
        "blendshapes": blendshapes,
        "arkit52": to_arkit52(blendshapes),
        "head_pose": {
            "convention": "R = Rz(roll) @ Ry(yaw) @ Rx(pitch); v_camera = R @ v_model + translation; "
            "+y up, +z towards the camera",
            "radians": {k: float(a) for k, a in zip(names, angles)},
            "degrees": {k: float(np.degrees(a)) for k, a in zip(names, angles)},
            "rotation_matrix": euler_to_matrix(angles).tolist(),
            "translation_model_units": trans.tolist(),
            "translation_m": (trans * unit_m).tolist(),
            "model_unit_m": unit_m,
        },
    }


def export_blendshapes_json(
    weights: Mapping[str, float] | tuple[Sequence[str], Sequence[float]],
    pose=None,
    path: str | Path = "blendshapes.json",
    translation: Sequence[float] | None = None,
    unit_m: float = 0.1,
) -> Path:
    """Write blendshape weights and head pose as JSON.

    Args:
        weights: dict name -> weight, or (names, values); every name is written, in order, clipped to [0, 1]
            (NaN -> 0). ICT's 53 ARKit-named shapes are also mapped to Apple's 52 names under ``"arkit52"``.
        pose: (pitch, yaw, roll) radians; or those followed by (tx, ty, tz); or an (angles, translation) pair;
            or a dict with ``angles`` and ``translation``; None = identity.
        path: output file.
        translation: (3,) model units; overrides one given in ``pose``.
        unit_m: metres per model unit, for ``translation_m``.

    Fields: ``schema``, ``schema_version``, ``blendshape_count``, ``blendshapes``, ``arkit52``, ``head_pose``
    (``radians``, ``degrees``, ``rotation_matrix`` row-major, ``translation_model_units``, ``translation_m``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = blendshapes_payload(weights, pose, translation, unit_m)
    path.write_text(json.dumps(payload, indent=2))
    return path
