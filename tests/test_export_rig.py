"""The rigged GLB read back with pygltflib (an independent decoder of the bytes we wrote) and trimesh."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from msma.export_rig import Rig, RigAnimation, arkit_target_name, euler_to_quaternion, export_rigged_glb

pygltflib = pytest.importorskip("pygltflib")

_DTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_accessor(gltf, blob: bytes, index: int) -> np.ndarray:
    """Decode one accessor, sparse ones included (zeros + substituted rows), as the glTF spec describes."""
    acc = gltf.accessors[index]
    width = _WIDTH[acc.type]

    def view_array(view_index: int, offset: int, dtype, count: int) -> np.ndarray:
        view = gltf.bufferViews[view_index]
        start = (view.byteOffset or 0) + (offset or 0)
        return np.frombuffer(blob, dtype=dtype, count=count, offset=start)

    if acc.bufferView is not None:
        data = view_array(acc.bufferView, acc.byteOffset, _DTYPES[acc.componentType], acc.count * width).copy()
    else:
        data = np.zeros(acc.count * width, _DTYPES[acc.componentType])
    data = data.reshape(acc.count, width)
    if acc.sparse is not None:
        sp = acc.sparse
        rows = view_array(sp.indices.bufferView, sp.indices.byteOffset, _DTYPES[sp.indices.componentType], sp.count)
        assert np.all(np.diff(rows.astype(np.int64)) > 0), "sparse indices must be strictly increasing"
        values = view_array(sp.values.bufferView, sp.values.byteOffset, _DTYPES[acc.componentType], sp.count * width)
        data[rows] = values.reshape(sp.count, width)
    return data


@pytest.fixture(scope="module")
def rig(ict):
    rng = np.random.default_rng(0)
    weights = np.zeros(ict.n_expression)
    weights[ict.expression_names.index("jawOpen")] = 0.3
    weights[ict.expression_names.index("mouthSmile_L")] = 0.6
    colours = np.tile(np.array([200, 150, 130], np.uint8), (ict.n_vertices, 1))
    return Rig.from_model(ict, identity=rng.normal(0, 0.8, ict.n_identity), weights=weights, vertex_colors=colours)


def load(path):
    gltf = pygltflib.GLTF2().load(str(path))
    return gltf, gltf.binary_blob()


def test_target_names_are_arkit_spelling():
    assert arkit_target_name("eyeBlink_L") == "eyeBlinkLeft"
    assert arkit_target_name("browInnerUp_R") == "browInnerUpRight"
    assert arkit_target_name("jawOpen") == "jawOpen"


def test_rigged_glb_round_trip(rig, tmp_path):
    path = export_rigged_glb(rig, tmp_path / "face.glb")
    gltf, blob = load(path)
    assert struct.unpack("<4sII", path.read_bytes()[:12])[0] == b"glTF"
    face_mesh = gltf.meshes[next(n.mesh for n in gltf.nodes if n.name == "face")]
    names = face_mesh.extras["targetNames"]
    assert len(names) == 53 and "jawOpen" in names and "eyeBlinkLeft" in names and "browInnerUpRight" in names
    assert np.allclose(face_mesh.weights, rig.weights)
    prim = face_mesh.primitives[0]
    assert len(prim.targets) == 53

    # positions: metres, split vertices map back onto model vertices (nearest neighbour on the neutral mesh)
    positions = read_accessor(gltf, blob, prim.attributes.POSITION)
    neutral_m = rig.mesh.vertices * 0.1
    from scipy.spatial import cKDTree

    distance, model_index = cKDTree(neutral_m).query(positions)
    assert distance.max() < 1e-6
    # every sparse morph target decodes to the model's blendshape offsets (metres) within the 10 um cut-off
    for k in (names.index("jawOpen"), names.index("eyeBlinkLeft"), names.index("cheekPuffRight")):
        decoded = read_accessor(gltf, blob, prim.targets[k]["POSITION"])
        expected = rig.deltas[k][model_index] * 0.1
        assert np.abs(decoded - expected).max() < 1.5e-5
        assert np.linalg.norm(decoded, axis=1).max() > 1e-3  # the target really moves something
        acc = gltf.accessors[prim.targets[k]["POSITION"]]
        assert acc.bufferView is None and acc.sparse.count < acc.count  # sparse, not dense
        assert np.allclose(acc.min, decoded.min(0), atol=1e-7) and np.allclose(acc.max, decoded.max(0), atol=1e-7)

    # jawOpen moves the chin down: the lowest front vertex goes down by centimetres
    jaw = read_accessor(gltf, blob, prim.targets[names.index("jawOpen")]["POSITION"])
    assert jaw[:, 1].min() < -0.02

    # eyeballs are their own nodes, centred on the eyeball
    nodes = {n.name: n for n in gltf.nodes}
    assert {"head", "face", "eyeLeft", "eyeRight"} <= set(nodes)
    assert nodes["eyeLeft"].translation[0] > 0 > nodes["eyeRight"].translation[0]
    eye_mesh = gltf.meshes[nodes["eyeLeft"].mesh]
    eye_local = read_accessor(gltf, blob, eye_mesh.primitives[0].attributes.POSITION)
    radius = np.linalg.norm(eye_local, axis=1)
    assert 0.010 < np.median(radius) < 0.017  # the eyeball (~12-15 mm radius) sits around the node origin


def test_rigged_glb_size_is_sensible(rig, tmp_path):
    rigged = export_rigged_glb(rig, tmp_path / "rigged.glb").stat().st_size
    positions_only = export_rigged_glb(rig, tmp_path / "positions.glb", morph_normals=False).stat().st_size
    dense_deltas = 53 * len(rig.mesh.vertices) * 3 * 4
    assert positions_only < 0.6 * dense_deltas
    assert rigged < 8_000_000


def test_trimesh_still_loads_the_rigged_glb(rig, tmp_path):
    import trimesh

    scene = trimesh.load(export_rigged_glb(rig, tmp_path / "face.glb"), force="scene")
    assert sum(len(g.faces) for g in scene.geometry.values()) == len(rig.mesh.faces)


def test_animation_channels(rig, tmp_path):
    t = 12
    times = np.arange(t) / 30.0
    weights = np.zeros((t, 53))
    weights[:, rig.names.index("jawOpen")] = np.linspace(0, 1, t)
    angles = np.stack([np.zeros(t), np.linspace(0, 0.5, t), np.zeros(t)], 1)
    eyes = np.repeat(euler_to_quaternion(np.zeros((t, 3)))[:, None], 2, axis=1)
    anim = RigAnimation(times, weights, euler_to_quaternion(angles), eyes)
    gltf, blob = load(export_rigged_glb(rig, tmp_path / "anim.glb", animation=anim))
    (animation,) = gltf.animations
    paths = sorted((gltf.nodes[c.target.node].name, c.target.path) for c in animation.channels)
    assert paths == [("eyeLeft", "rotation"), ("eyeRight", "rotation"), ("face", "weights"), ("head", "rotation")]
    for channel in animation.channels:
        sampler = animation.samplers[channel.sampler]
        keys = read_accessor(gltf, blob, sampler.input)[:, 0]
        assert np.allclose(keys, times, atol=1e-6)
        values = read_accessor(gltf, blob, sampler.output)
        if channel.target.path == "weights":
            assert np.allclose(values.reshape(t, 53), weights, atol=1e-6)
        elif gltf.nodes[channel.target.node].name == "head":
            from scipy.spatial.transform import Rotation

            yaw = Rotation.from_quat(values[-1]).as_euler("ZYX")[1]
            assert yaw == pytest.approx(0.5, abs=1e-5)


def test_euler_to_quaternion_matches_library_rotation():
    from msma.export import euler_to_matrix

    angles = np.array([0.2, -0.4, 0.3])
    from scipy.spatial.transform import Rotation

    assert np.allclose(Rotation.from_quat(euler_to_quaternion(angles)).as_matrix(), euler_to_matrix(angles))


def test_bad_rig_inputs(rig):
    with pytest.raises(ValueError, match="deltas"):
        Rig(rig.mesh, rig.deltas[:, :10], rig.names)
    with pytest.raises(ValueError, match="names"):
        Rig(rig.mesh, rig.deltas, rig.names[:5])
    with pytest.raises(ValueError, match="increasing"):
        RigAnimation(np.array([0.0, 0.0]), np.zeros((2, 53)))


def test_batched_vertex_normals_match_the_mesh_exporter(rig):
    from msma.export.mesh import _vertex_normals
    from msma.export_rig import _VertexNormals

    normals = _VertexNormals(rig.mesh.faces, len(rig.mesh.vertices))
    for k in (0, 20, 52):
        moved = rig.mesh.vertices + rig.deltas[k]
        np.testing.assert_allclose(normals(moved), _vertex_normals(moved, rig.mesh.faces), atol=1e-12)
