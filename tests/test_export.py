from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import trimesh

from msma.export import (
    ARKIT52_NAMES,
    BLENDSHAPE_SCHEMA_VERSION,
    MeshData,
    euler_to_matrix,
    export_all,
    export_blendshapes_json,
    export_glb,
    export_obj,
    export_obj_zip,
    export_ply,
    sample_texture,
    split_uv_seams,
    to_arkit52,
)


def cylinder_mesh(rings: int = 4, segments: int = 10) -> MeshData:
    """Open cylinder around y (+y up), outward-facing, with a UV seam where u wraps from 1 back to 0."""
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    heights = np.linspace(-1, 1, rings)
    vertices = np.array([[np.sin(a), h, np.cos(a)] for h in heights for a in angles])
    uv = np.array([[s / segments, r / (rings - 1)] for r in range(rings) for s in range(segments + 1)])
    faces, face_uv = [], []
    for r in range(rings - 1):
        for s in range(segments):
            v00, v01 = r * segments + s, r * segments + (s + 1) % segments
            v10, v11 = v00 + segments, v01 + segments
            t00, t01 = r * (segments + 1) + s, r * (segments + 1) + s + 1
            t10, t11 = t00 + segments + 1, t01 + segments + 1
            faces += [[v00, v01, v11], [v00, v11, v10]]
            face_uv += [[t00, t01, t11], [t00, t11, t10]]
    texture = np.zeros((16, 32, 3), np.uint8)
    texture[:8] = (220, 30, 30)  # top half (v > 0.5) red
    texture[8:] = (30, 30, 220)  # bottom half blue
    return MeshData(vertices, np.array(faces), uv, np.array(face_uv), texture, unit_m=0.1)


def _single_geometry(loaded) -> trimesh.Trimesh:
    if isinstance(loaded, trimesh.Scene):
        assert len(loaded.geometry) == 1
        return next(iter(loaded.geometry.values()))
    return loaded


def _same_point_sets(a: np.ndarray, b: np.ndarray, decimals: int = 5) -> bool:
    ua = np.unique(np.round(a, decimals), axis=0)
    ub = np.unique(np.round(b, decimals), axis=0)
    return ua.shape == ub.shape and np.allclose(ua, ub, atol=10.0**-decimals)


def test_mesh_faces_outward():
    mesh = cylinder_mesh()
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    radial = tm.triangles_center * [1, 0, 1]
    assert np.all(np.sum(tm.face_normals * radial, axis=1) > 0)


def test_split_uv_seams():
    mesh = cylinder_mesh(rings=3, segments=6)
    split = split_uv_seams(mesh.faces, mesh.face_uv_index)
    assert len(split.vertex_index) == 3 * 7  # one extra vertex per ring on the seam
    assert np.array_equal(split.vertex_index[split.faces], mesh.faces)
    assert np.array_equal(split.uv_index[split.faces], mesh.face_uv_index)


def test_sample_texture_orientation():
    texture = cylinder_mesh().texture
    colors = sample_texture(texture, np.array([[0.5, 0.9], [0.5, 0.1]]))
    assert tuple(colors[0]) == (220, 30, 30)  # v up: high v is the top of the image
    assert tuple(colors[1]) == (30, 30, 220)


def test_obj_roundtrip(tmp_path):
    mesh = cylinder_mesh()
    written = export_obj(mesh, tmp_path / "face.obj")
    assert [p.name for p in written] == ["face.obj", "face.mtl", "face.png"]
    assert all(p.is_file() for p in written)
    text = (tmp_path / "face.obj").read_text()
    # one `v` per model vertex, in model order, in metres
    v_rows = np.array([line.split()[1:4] for line in text.splitlines() if line.startswith("v ")], float)
    assert np.allclose(v_rows, mesh.vertices * 0.1, atol=1e-6)
    assert "map_Kd face.png" in (tmp_path / "face.mtl").read_text()

    loaded = _single_geometry(trimesh.load(tmp_path / "face.obj"))
    assert len(loaded.faces) == len(mesh.faces)
    assert _same_point_sets(loaded.vertices, mesh.vertices * 0.1)
    assert isinstance(loaded.visual, trimesh.visual.TextureVisuals)
    assert loaded.visual.material.image.size == (32, 16)
    assert loaded.visual.uv is not None


def test_obj_vertex_colors_without_texture(tmp_path):
    mesh = cylinder_mesh()
    colors = np.random.default_rng(1).integers(0, 256, (len(mesh.vertices), 3)).astype(np.uint8)
    written = export_obj(MeshData(mesh.vertices, mesh.faces, vertex_colors=colors), tmp_path / "c.obj")
    assert [p.name for p in written] == ["c.obj"]
    loaded = _single_geometry(trimesh.load(tmp_path / "c.obj", process=False))
    assert len(loaded.vertices) == len(mesh.vertices)
    assert np.abs(loaded.visual.vertex_colors[:, :3].astype(int) - colors).max() <= 1


def test_obj_units(tmp_path):
    mesh = cylinder_mesh()
    export_obj(mesh, tmp_path / "mm.obj", unit="mm")
    loaded = _single_geometry(trimesh.load(tmp_path / "mm.obj"))
    assert _same_point_sets(loaded.vertices, mesh.vertices * 100.0, decimals=3)
    with pytest.raises(ValueError):
        export_obj(mesh, tmp_path / "x.obj", unit="furlong")


def test_obj_zip(tmp_path):
    path = export_obj_zip(cylinder_mesh(), tmp_path / "download.zip", stem="face")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["face.mtl", "face.obj", "face.png"]
        assert b"mtllib face.mtl" in archive.read("face.obj")


def test_glb_textured_roundtrip(tmp_path):
    mesh = cylinder_mesh()
    export_glb(mesh, tmp_path / "face.glb")
    loaded = _single_geometry(trimesh.load(tmp_path / "face.glb"))
    split = split_uv_seams(mesh.faces, mesh.face_uv_index)
    assert len(loaded.vertices) == len(split.vertex_index)
    assert len(loaded.faces) == len(mesh.faces)
    assert np.allclose(loaded.vertices, mesh.vertices[split.vertex_index] * 0.1, atol=1e-6)
    assert isinstance(loaded.visual, trimesh.visual.TextureVisuals)
    assert loaded.visual.material.baseColorTexture.size == (32, 16)
    assert np.allclose(loaded.visual.uv, mesh.uv[split.uv_index], atol=1e-6)
    # texture lookups agree with ours: v up
    colors = loaded.visual.to_color().vertex_colors[:, :3]
    top = loaded.vertices[:, 1] > 0.05
    assert np.all(colors[top] == (220, 30, 30))
    # winding kept: normals point away from the cylinder axis
    radial = loaded.triangles_center * [1, 0, 1]
    assert np.all(np.sum(loaded.face_normals * radial, axis=1) > 0)


def test_jpeg_textures(tmp_path):
    mesh = cylinder_mesh()
    export_glb(mesh, tmp_path / "j.glb", texture_format="jpeg")
    loaded = _single_geometry(trimesh.load(tmp_path / "j.glb"))
    assert loaded.visual.material.baseColorTexture.format == "JPEG"
    assert loaded.visual.material.baseColorTexture.size == (32, 16)
    written = export_obj(mesh, tmp_path / "j.obj", texture_format="jpeg")
    assert [p.name for p in written] == ["j.obj", "j.mtl", "j.jpg"]
    assert _single_geometry(trimesh.load(tmp_path / "j.obj")).visual.material.image.size == (32, 16)
    with pytest.raises(ValueError):
        export_glb(mesh, tmp_path / "x.glb", texture_format="tiff")


def test_glb_vertex_colors(tmp_path):
    mesh = cylinder_mesh()
    colors = np.random.default_rng(0).integers(0, 256, (len(mesh.vertices), 3)).astype(np.uint8)
    plain = MeshData(mesh.vertices, mesh.faces, vertex_colors=colors)
    export_glb(plain, tmp_path / "c.glb")
    loaded = _single_geometry(trimesh.load(tmp_path / "c.glb"))
    assert len(loaded.vertices) == len(mesh.vertices)
    assert np.allclose(loaded.vertices, mesh.vertices * 0.1, atol=1e-6)
    assert np.array_equal(loaded.visual.vertex_colors[:, :3], colors)


def test_glb_closed_mesh_outward(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    export_glb(MeshData(sphere.vertices, sphere.faces), tmp_path / "s.glb")
    loaded = _single_geometry(trimesh.load(tmp_path / "s.glb"))
    assert loaded.is_winding_consistent and loaded.volume > 0


def test_ply_colors_from_texture(tmp_path):
    mesh = cylinder_mesh()
    export_ply(mesh, tmp_path / "face.ply")
    loaded = _single_geometry(trimesh.load(tmp_path / "face.ply", process=False))
    assert len(loaded.vertices) == len(mesh.vertices)
    assert np.allclose(loaded.vertices, mesh.vertices * 0.1, atol=1e-6)
    colors = loaded.visual.vertex_colors[:, :3]
    assert np.all(colors[mesh.vertices[:, 1] > 0.5] == (220, 30, 30))
    assert np.all(colors[mesh.vertices[:, 1] < -0.5] == (30, 30, 220))


def test_ply_given_float_colors(tmp_path):
    mesh = cylinder_mesh()
    colors = np.linspace(0, 1, len(mesh.vertices) * 3).reshape(-1, 3)
    export_ply(MeshData(mesh.vertices, mesh.faces, vertex_colors=colors), tmp_path / "c.ply", binary=False)
    loaded = _single_geometry(trimesh.load(tmp_path / "c.ply", process=False))
    assert np.array_equal(loaded.visual.vertex_colors[:, :3], np.round(colors * 255).astype(np.uint8))


def test_blendshapes_json(tmp_path):
    names = [f"shape{i}_L" for i in range(53)]
    values = np.linspace(-0.5, 1.5, 53)
    values[3] = np.nan
    path = export_blendshapes_json((names, values), (0.1, -0.2, 0.3, 1.0, 2.0, 3.0), tmp_path / "b.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == BLENDSHAPE_SCHEMA_VERSION
    assert list(data["blendshapes"]) == names and data["blendshape_count"] == 53
    weights = np.array(list(data["blendshapes"].values()))
    assert weights.min() == 0.0 and weights.max() == 1.0 and weights[3] == 0.0
    pose = data["head_pose"]
    assert pose["degrees"]["yaw"] == pytest.approx(np.degrees(-0.2))
    assert pose["radians"]["roll"] == pytest.approx(0.3)
    matrix = np.array(pose["rotation_matrix"])
    assert np.allclose(matrix @ matrix.T, np.eye(3)) and np.linalg.det(matrix) == pytest.approx(1.0)
    assert np.allclose(pose["translation_model_units"], [1, 2, 3])
    assert np.allclose(pose["translation_m"], [0.1, 0.2, 0.3])
    assert len(data["arkit52"]) == 52


def test_blendshapes_dict_and_arkit_mapping(tmp_path):
    weights = {"eyeBlink_L": 0.5, "browInnerUp_L": 0.2, "browInnerUp_R": 0.4, "jawOpen": 2.0}
    data = json.loads(export_blendshapes_json(weights, None, tmp_path / "b.json").read_text())
    assert data["blendshapes"]["jawOpen"] == 1.0
    arkit = to_arkit52(data["blendshapes"])
    assert list(arkit) == list(ARKIT52_NAMES)
    assert arkit["eyeBlinkLeft"] == 0.5 and arkit["jawOpen"] == 1.0
    assert arkit["browInnerUp"] == pytest.approx(0.3) and arkit["tongueOut"] == 0.0
    assert np.allclose(data["head_pose"]["rotation_matrix"], np.eye(3))


@pytest.mark.parametrize(
    "pose",
    [(0.1, 0.2, 0.3, 1.0, 2.0, 3.0), (np.array([0.1, 0.2, 0.3]), [1.0, 2.0, 3.0]),
     {"angles": (0.1, 0.2, 0.3), "translation": (1.0, 2.0, 3.0)}],
)
def test_pose_forms(tmp_path, pose):
    data = json.loads(export_blendshapes_json({"jawOpen": 0.1}, pose, tmp_path / "p.json").read_text())
    assert data["head_pose"]["radians"] == pytest.approx({"pitch": 0.1, "yaw": 0.2, "roll": 0.3})
    assert data["head_pose"]["translation_model_units"] == pytest.approx([1.0, 2.0, 3.0])


def test_euler_convention():
    pitch, yaw, roll = 0.1, 0.2, 0.3
    rx = euler_to_matrix((pitch, 0, 0))
    ry = euler_to_matrix((0, yaw, 0))
    rz = euler_to_matrix((0, 0, roll))
    assert np.allclose(euler_to_matrix((pitch, yaw, roll)), rz @ ry @ rx)
    assert np.allclose(ry @ [0, 0, 1], [np.sin(yaw), 0, np.cos(yaw)])


def test_export_all(tmp_path):
    names = [f"s{i}" for i in range(53)]
    paths = export_all(cylinder_mesh(), tmp_path / "out", "face", formats=("glb", "obj", "obj.zip", "ply", "json"),
                       blendshapes=(names, np.full(53, 0.5)), pose=(0, 0, 0))
    assert set(paths) == {"glb", "obj", "mtl", "texture", "obj.zip", "ply", "json"}
    assert paths["texture"].name == "face.png"
    assert all(p.is_file() for p in paths.values())
    with pytest.raises(ValueError):
        export_all(cylinder_mesh(), tmp_path / "out", formats=("fbx",))


def test_meshdata_validation():
    mesh = cylinder_mesh()
    with pytest.raises(ValueError):
        MeshData(mesh.vertices[:, :2], mesh.faces)
    with pytest.raises(ValueError):
        MeshData(mesh.vertices, mesh.faces + len(mesh.vertices))
    with pytest.raises(ValueError):
        MeshData(mesh.vertices, mesh.faces, mesh.uv)  # uv not per-vertex and no face_uv_index
    with pytest.raises(ValueError):
        MeshData(mesh.vertices, mesh.faces, texture=mesh.texture)
    per_vertex = MeshData(mesh.vertices, mesh.faces, uv=np.zeros((len(mesh.vertices), 2)))
    assert np.array_equal(per_vertex.face_uv_index, mesh.faces)
