"""The rigged and animated GLB imported by a real consumer: Blender (Debian's `blender`, run headless).

Blender comes from `.ci/install_blender.sh`; the test skips cleanly where it is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from msma.export_rig import Rig, RigAnimation, euler_to_quaternion, export_rigged_glb

BLENDER = shutil.which("blender")
pytestmark = pytest.mark.skipif(BLENDER is None, reason="blender not installed (run .ci/install_blender.sh)")

# Runs inside Blender. Debian's Blender 3.4 importer crashes on numpy >= 1.24 in its default "NORMALS" shading
# guess (np.bool), so the import asks for smooth shading, which skips that code path.
BLENDER_SCRIPT = r"""
import bpy, json, sys
from mathutils import Vector
args = json.loads(sys.argv[sys.argv.index("--") + 1])
out = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=args["rigged"], import_shading="SMOOTH")
face = bpy.data.objects["face"]
keys = face.data.shape_keys.key_blocks
out["keys"] = [k.name for k in keys if k.name != "Basis"]
out["default_values"] = {k.name: k.value for k in keys if k.name != "Basis"}
out["eye_objects"] = sorted(o.name for o in bpy.data.objects if o.name.startswith("eye"))

def evaluated():
    dg = bpy.context.evaluated_depsgraph_get()
    ob = face.evaluated_get(dg)
    mesh = ob.to_mesh()
    coords = [tuple(face.matrix_world @ v.co) for v in mesh.vertices]
    ob.to_mesh_clear()
    return coords

for k in keys:
    k.value = 0.0
rest = evaluated()
keys["jawOpen"].value = 1.0
opened = evaluated()
chin = Vector(args["chin_blender"])
nearest = min(range(len(rest)), key=lambda i: (Vector(rest[i]) - chin).length)
out["chin_rest"] = rest[nearest]
out["chin_open"] = opened[nearest]
out["chin_match_m"] = (Vector(rest[nearest]) - chin).length

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=args["animated"], import_shading="SMOOTH")
face = bpy.data.objects["face"]
action = face.data.shape_keys.animation_data.action
out["shape_key_curves"] = sorted(fc.data_path for fc in action.fcurves)
jaw_curve = next(fc for fc in action.fcurves if fc.data_path == 'key_blocks["jawOpen"].value')
out["jaw_keys"] = [tuple(p.co) for p in jaw_curve.keyframe_points]
head = bpy.data.objects["head"]
out["head_curves"] = sorted({fc.data_path for fc in head.animation_data.action.fcurves})
out["fps"] = bpy.context.scene.render.fps
print("MSMA_RESULT " + json.dumps(out))
"""


def run_blender(args: dict) -> dict:
    proc = subprocess.run([BLENDER, "-b", "--factory-startup", "--python-expr", BLENDER_SCRIPT, "--",
                           json.dumps(args)], capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MSMA_RESULT ")]
    assert lines, f"blender failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("MSMA_RESULT "):])


def test_blender_imports_rig_and_animation(ict, tmp_path):
    names = ict.expression_names
    weights = np.zeros(len(names))
    weights[names.index("mouthSmile_L")] = 0.5
    rig = Rig.from_model(ict, identity=np.random.default_rng(1).normal(0, 0.8, ict.n_identity), weights=weights)
    rigged = export_rigged_glb(rig, tmp_path / "rigged.glb")

    t = 30
    anim_weights = np.zeros((t, len(names)))
    anim_weights[:, names.index("jawOpen")] = np.linspace(0, 1, t)
    angles = np.stack([np.zeros(t), np.linspace(0, 0.4, t), np.zeros(t)], 1)
    animated = export_rigged_glb(rig, tmp_path / "animated.glb",
                                 animation=RigAnimation(np.arange(t) / 30.0, anim_weights,
                                                        euler_to_quaternion(angles)))

    chin_vertex = int(ict.landmarks68[8])
    chin = rig.mesh.vertices[chin_vertex] * 0.1  # glTF metres, +y up
    expected_drop = rig.deltas[names.index("jawOpen"), chin_vertex] * 0.1
    # glTF (x, y, z) is Blender (x, -z, y)
    result = run_blender({"rigged": str(rigged), "animated": str(animated),
                          "chin_blender": [float(chin[0]), float(-chin[2]), float(chin[1])]})

    assert len(result["keys"]) == 53
    assert {"jawOpen", "eyeBlinkLeft", "mouthSmileRight", "browInnerUpLeft", "cheekPuffRight"} <= set(result["keys"])
    assert result["default_values"]["mouthSmileLeft"] == pytest.approx(0.5, abs=1e-6)
    assert result["default_values"]["jawOpen"] == 0.0
    assert result["eye_objects"] == ["eyeLeft", "eyeRight"]

    assert result["chin_match_m"] < 1e-4
    rest, opened = np.array(result["chin_rest"]), np.array(result["chin_open"])
    moved = opened - rest
    assert moved[2] < -0.01, f"jawOpen=1 should move the chin down by centimetres, moved {moved}"
    # Blender's displacement equals the model's jawOpen offset at the chin (axes converted)
    assert np.allclose(moved, [expected_drop[0], -expected_drop[2], expected_drop[1]], atol=2e-4)

    assert 'key_blocks["jawOpen"].value' in result["shape_key_curves"]
    assert len(result["shape_key_curves"]) == 53
    jaw = np.array(result["jaw_keys"])
    assert len(jaw) == t and jaw[0, 1] == pytest.approx(0) and jaw[-1, 1] == pytest.approx(1, abs=1e-5)
    assert "rotation_quaternion" in result["head_curves"]
