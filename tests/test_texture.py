"""Tests for msma.texture (UV unwrap with visibility and symmetric fill). Small sizes: runs in a few seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msma.face_model import Coefficients, FaceModel, FaceModelInfo, vertex_normals
from msma.render import Renderer
from msma.texture import TextureUnwrapper, UnwrapResult

SIZE = 128


@pytest.fixture(scope="module")
def unwrapper(model) -> TextureUnwrapper:
    return TextureUnwrapper(model, texture_size=SIZE, renderer_backend="torch")


@pytest.fixture(scope="module")
def vertex_colors(model) -> np.ndarray:
    """Smooth, left/right asymmetric colours (so mirrored texels are distinguishable)."""
    v = model.mean.numpy().astype(np.float64)
    return np.clip(0.5 + 0.4 * np.stack([np.sin(3 * v[:, 0]), np.cos(2.5 * v[:, 1]), np.sin(3 * v[:, 2] + v[:, 0])], 1),
                   0, 1)


def _pose(model: FaceModel, yaw_deg: float):
    coeffs = Coefficients.zeros(model)
    coeffs.angles[0, 1] = float(np.deg2rad(yaw_deg))
    with torch.no_grad():
        return model.geometry(coeffs, with_color=False)


def _photo(model, geometry, colors, scale=1.0, offset=(0.0, 0.0), size=(224, 224), background=(0.1, 0.2, 0.9)):
    """Render the model with per-vertex colours into a photo; returns (photo, screen vertices in photo pixels)."""
    screen = geometry.screen[0].clone()
    screen[:, :2] = screen[:, :2] * scale + torch.tensor(offset, dtype=screen.dtype)
    with torch.no_grad():
        out = Renderer(size, backend="torch").render_colors(
            screen[None], model.triangles, torch.as_tensor(colors, dtype=torch.float32)[None], background=background)
    photo = np.clip(np.round(out.image[0].numpy() * 255), 0, 255).astype(np.uint8)
    return photo, screen.numpy()


@pytest.fixture(scope="module")
def frontal(model, vertex_colors):
    geometry = _pose(model, 0.0)
    photo, screen = _photo(model, geometry, vertex_colors)
    return geometry, photo, screen


def _texels(unwrapper, image):
    return image.reshape(-1, *image.shape[2:])[unwrapper.texel_index]


def test_layout_and_shapes(model, unwrapper, frontal):
    assert unwrapper.uv.shape[1] == 2 and unwrapper.uv.min() >= 0 and unwrapper.uv.max() <= 1
    assert unwrapper.triangle_uv_index.shape == tuple(model.triangles.shape)
    assert unwrapper.texel_mask.shape == (SIZE, SIZE) and 0.3 < unwrapper.texel_mask.mean() < 0.95
    assert (unwrapper.mirror_index >= 0).mean() > 0.99
    geometry, photo, screen = frontal
    result = unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices)
    assert isinstance(result, UnwrapResult)
    assert result.texture.shape == (SIZE, SIZE, 3) and result.texture.dtype == np.uint8
    assert result.visibility.shape == (SIZE, SIZE) and result.visibility.dtype == np.float32
    assert result.mirror_weight.shape == (SIZE, SIZE)
    assert 0 <= result.visibility.min() and result.visibility.max() <= 1
    assert result.uv is unwrapper.uv and result.face_uv_index is unwrapper.triangle_uv_index
    assert (result.visibility[~unwrapper.texel_mask] == 0).all()


def test_flat_photo_fills_everything(model, unwrapper):
    """A flat photo gives a flat texture everywhere, uncovered (gutter) texels included: no black seams."""
    colour = np.array([200, 120, 90], np.uint8)
    photo = np.broadcast_to(colour, (224, 224, 3)).copy()
    geometry = _pose(model, 20.0)
    normals = vertex_normals(geometry.camera_vertices, model.triangles)[0]
    result = unwrapper.unwrap(photo, geometry.screen[0], normals)
    assert result.visibility.max() > 0.99
    diff = np.abs(result.texture.astype(int) - colour).max(-1)
    assert diff.max() <= 1
    assert (result.texture[~unwrapper.texel_mask].sum(-1) > 0).all()


def test_visible_texels_reproduce_photo(model, unwrapper, frontal, vertex_colors):
    geometry, photo, screen = frontal
    normals = vertex_normals(geometry.camera_vertices, model.triangles)[0].numpy()
    result = unwrapper.unwrap(photo, screen, normals, camera_vertices=geometry.camera_vertices[0].numpy())
    expected = unwrapper.per_texel(vertex_colors) * 255
    got = _texels(unwrapper, result.texture).astype(np.float64)
    visible = _texels(unwrapper, result.visibility) > 0.9
    assert visible.mean() > 0.2
    err = np.abs(got[visible] - expected[visible]).max(1)
    # a 224 px photo: foreshortened areas (forehead top, eyes) are undersampled, so a few texels differ more
    assert err.mean() < 2.5 and np.percentile(err, 95) < 12, (err.mean(), np.percentile(err, [95, 99]))


def test_fallback_colours_for_unseen_texels(model, unwrapper, frontal, vertex_colors):
    geometry, photo, screen = frontal
    result = unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices,
                              fallback_vertex_colors=vertex_colors)
    unseen = (_texels(unwrapper, result.visibility) == 0) & (_texels(unwrapper, result.mirror_weight) == 0)
    assert unseen.mean() > 0.1  # back of the head
    expected = unwrapper.per_texel(vertex_colors) * 255
    err = np.abs(_texels(unwrapper, result.texture)[unseen].astype(np.float64) - expected[unseen]).max(1)
    assert err.mean() < 3.0


def test_yawed_face_hidden_side_from_mirror(model, unwrapper, vertex_colors):
    geometry = _pose(model, 60.0)
    photo, screen = _photo(model, geometry, vertex_colors)
    result = unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices)
    face = unwrapper.texel_face_region
    mirror_w = _texels(unwrapper, result.mirror_weight)
    filled = face & (mirror_w > 0.9)
    assert filled.sum() > 0.2 * face.sum()
    expected = unwrapper.per_texel(vertex_colors) * 255
    got = _texels(unwrapper, result.texture).astype(np.float64)
    mirrored = expected[unwrapper.mirror_index[filled]]
    assert np.abs(got[filled] - mirrored).max(1).mean() < 3.0
    # the colours really are asymmetric, so this is not the texel's own colour
    assert np.abs(expected[filled] - mirrored).max(1).mean() > 10.0
    # hidden side: its mirror side is visible, not itself
    x = unwrapper.texel_position[:, 0]
    vis = _texels(unwrapper, result.visibility)
    hidden_side = face & (x > 0.3)  # positive yaw turns +x away from the camera
    assert vis[hidden_side].mean() < 0.1


def test_large_photo(model, unwrapper, vertex_colors):
    """A photo much larger than the crop (downscaled internally before sampling), face off-centre."""
    geometry = _pose(model, -25.0)
    photo, screen = _photo(model, geometry, vertex_colors, scale=4.0, offset=(700.0, 300.0), size=(1400, 1800))
    result = unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices)
    expected = unwrapper.per_texel(vertex_colors) * 255
    visible = _texels(unwrapper, result.visibility) > 0.9
    assert visible.mean() > 0.2
    err = np.abs(_texels(unwrapper, result.texture)[visible].astype(np.float64) - expected[visible]).max(1)
    assert err.mean() < 3.0


def test_face_cut_by_photo_border(model, unwrapper, frontal, vertex_colors):
    geometry, photo, screen = frontal
    cut = photo[:130]  # lower face and neck off the photo
    result = unwrapper.unwrap(cut, screen, camera_vertices=geometry.camera_vertices)
    y = unwrapper.per_texel(screen)[:, 1]
    vis = _texels(unwrapper, result.visibility)
    assert vis[y > 131].max() == 0
    full = _texels(unwrapper, unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices).visibility)
    above = (y > 60) & (y < 122)
    assert np.abs(vis[above] - full[above]).mean() < 0.02  # the weight changes only right at the border
    visible = vis > 0.9
    expected = unwrapper.per_texel(vertex_colors) * 255
    err = np.abs(_texels(unwrapper, result.texture)[visible].astype(np.float64) - expected[visible]).max(1)
    assert err.mean() < 2.5


def test_face_outside_photo_uses_fallback(model, unwrapper, vertex_colors):
    geometry = _pose(model, 0.0)
    screen = geometry.screen[0].numpy().copy()
    screen[:, 0] += 1000.0  # entirely right of the photo
    photo = np.zeros((224, 224, 3), np.uint8)
    result = unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices,
                              fallback_vertex_colors=vertex_colors)
    assert result.visibility.max() == 0
    assert result.texture.sum(-1).min() > 0


def test_texture_round_trip_through_renderer(model, unwrapper, frontal):
    """Rendering the unwrapped texture with the atlas UVs gives back the photo (checks the UV conventions)."""
    geometry, photo, screen = frontal
    result = unwrapper.unwrap(photo, screen, camera_vertices=geometry.camera_vertices)
    texture = np.concatenate([result.texture / 255.0, result.visibility[..., None]], -1)  # RGB + visibility
    with torch.no_grad():
        out = Renderer(224, backend="torch").render_texture(
            torch.as_tensor(screen)[None], model.triangles, torch.as_tensor(unwrapper.uv),
            torch.as_tensor(unwrapper.triangle_uv_index), torch.as_tensor(texture, dtype=torch.float32))
    rendered = out.image[0].numpy()
    mask = out.mask[0].numpy() & (rendered[..., 3] > 0.95)  # grazing areas come from the fallback by design
    assert mask.sum() > 0.5 * out.mask[0].numpy().sum()
    err = np.abs(rendered[..., :3][mask] * 255 - photo[mask]).max(-1)
    assert np.median(err) < 3 and err.mean() < 5, (np.median(err), err.mean())


def test_input_validation(model, unwrapper, frontal):
    geometry, photo, screen = frontal
    with pytest.raises(ValueError, match="normals"):
        unwrapper.unwrap(photo, screen)
    with pytest.raises(ValueError, match="screen_vertices_photo"):
        unwrapper.unwrap(photo, screen[:10], camera_vertices=geometry.camera_vertices)
    with pytest.raises(ValueError, match="photo"):
        unwrapper.unwrap(photo[..., 0], screen, camera_vertices=geometry.camera_vertices)


def test_model_without_uvs_gets_planar_atlas():
    """BFM09-like models have no UVs: a planar projection of the mean shape is used."""
    n_side = 12
    xs, ys = np.meshgrid(np.linspace(-1, 1, n_side), np.linspace(-1, 1, n_side))
    mean = np.stack([xs.ravel(), ys.ravel(), 0.3 * np.cos(xs.ravel())], 1).astype(np.float32)
    quads = [(r * n_side + c, r * n_side + c + 1, (r + 1) * n_side + c + 1, (r + 1) * n_side + c)
             for r in range(n_side - 1) for c in range(n_side - 1)]
    triangles = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    n = len(mean)
    grid_model = FaceModel(
        mean=mean, identity_basis=np.zeros((1, n, 3)), expression_basis=np.zeros((1, n, 3)),
        albedo_mean=np.full((n, 3), 0.5), albedo_basis=np.zeros((1, n, 3)), triangles=triangles,
        landmarks68=np.zeros(68, np.int64), expression_names=["e"], info=FaceModelInfo("grid", "", ""),
        expression_range=None,
    )
    unwrapper = TextureUnwrapper(grid_model, texture_size=32, renderer_backend="torch")
    assert unwrapper.texel_mask.mean() > 0.5
    assert (unwrapper.mirror_index >= 0).all()
    screen = np.c_[mean[:, 0] * 40 + 50, -mean[:, 1] * 40 + 50, 5 - mean[:, 2]]
    normals = np.tile([0.0, 0.0, 1.0], (n, 1))
    photo = np.full((100, 100, 3), 77, np.uint8)
    result = unwrapper.unwrap(photo, screen, normals)
    assert (np.abs(result.texture.astype(int) - 77) <= 1).all()
