"""Tests of the differentiable rasteriser (msma.render). Small images only: the whole file runs in seconds."""

from __future__ import annotations

import pytest
import torch

from msma.render import Fragments, Renderer, RenderOutput, pytorch3d_available


def _brute_force(verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Reference visibility: every pixel centre against every triangle (float64), nearest perspective depth wins."""
    h, w = size
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    p = torch.stack((xs.reshape(-1), ys.reshape(-1)), -1)  # (P, 2)
    out = []
    for vb in verts.double():
        tri = vb[faces]  # (F, 3, 3)
        v0, v1, v2 = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]

        def edge(a, b):
            return (b[:, 0] - a[:, 0]) * (p[:, None, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, None, 0] - a[:, 0])

        area = (v1[:, 0] - v0[:, 0]) * (v2[:, 1] - v0[:, 1]) - (v2[:, 0] - v0[:, 0]) * (v1[:, 1] - v0[:, 1])
        b0, b1, b2 = edge(v1, v2) / area, edge(v2, v0) / area, edge(v0, v1) / area
        inside = (b0 >= 0) & (b1 >= 0) & (b2 >= 0)
        inv_z = b0 / tri[:, 0, 2] + b1 / tri[:, 1, 2] + b2 / tri[:, 2, 2]
        depth = torch.where(inside, 1 / inv_z, torch.full_like(inv_z, float("inf")))
        best = depth.argmin(1)
        face = torch.where(torch.isfinite(depth.min(1).values), best, -1)
        out.append(face.reshape(h, w))
    return torch.stack(out)


def _random_mesh(seed: int, n_tri: int, size: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(batch, n_tri, 1, 2, generator=g) * size * 1.2 - 0.1 * size
    xy = centre + (torch.rand(batch, n_tri, 3, 2, generator=g) - 0.5) * size * 0.5
    z = 1 + torch.rand(batch, n_tri, 3, 1, generator=g) * 3
    verts = torch.cat((xy, z), -1).reshape(batch, n_tri * 3, 3)
    faces = torch.arange(n_tri * 3).reshape(n_tri, 3)
    return verts, faces


def _square(size: float = 8.0, depth: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two triangles covering [0, size]^2, counter-clockwise as seen by the viewer (y up)."""
    verts = torch.tensor([[0, 0, depth], [size, 0, depth], [size, size, depth], [0, size, depth]], dtype=torch.float32)
    # Screen y is down, so viewer-CCW is clockwise on screen: (0, 0) -> (0, S) -> (S, S).
    faces = torch.tensor([[0, 3, 2], [0, 2, 1]])
    return verts[None], faces


def test_single_triangle_coverage_and_barycentrics():
    r = Renderer(8, backend="torch")
    verts = torch.tensor([[[1.0, 1.0, 2.0], [7.0, 1.0, 2.0], [1.0, 7.0, 2.0]]])
    frag = r.rasterize(verts, torch.tensor([[0, 1, 2]]))
    assert isinstance(frag, Fragments)
    assert frag.face_index.shape == (1, 8, 8) and frag.face_index.dtype == torch.long
    # Pixel centres (j + 0.5, i + 0.5) inside x >= 1, y >= 1, x + y <= 8 (edges inclusive).
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    expected = (j + 0.5 >= 1) & (i + 0.5 >= 1) & (i + j + 1 <= 8)
    assert torch.equal(frag.mask[0], expected)
    assert torch.equal(frag.face_index[0], torch.where(expected, 0, -1))
    # Barycentrics of pixel (row 2, col 3): p = (3.5, 2.5) -> b1 = (x - 1) / 6, b2 = (y - 1) / 6.
    assert torch.allclose(frag.bary[0, 2, 3], torch.tensor([1 - 2.5 / 6 - 1.5 / 6, 2.5 / 6, 1.5 / 6]), atol=1e-6)
    assert torch.allclose(frag.bary[frag.mask].sum(-1), torch.ones(int(expected.sum())), atol=1e-6)
    assert torch.all(frag.bary[~frag.mask] == 0) and torch.all(frag.depth[~frag.mask] == 0)
    assert torch.allclose(frag.depth[frag.mask], torch.full((int(expected.sum()),), 2.0))


def test_square_two_triangles_exact_cover():
    verts, faces = _square(8.0)
    frag = Renderer((8, 10), backend="torch").rasterize(verts, faces)
    assert frag.mask.shape == (1, 8, 10)
    assert frag.mask[0, :, :8].all() and not frag.mask[0, :, 8:].any()
    # Split along the diagonal y = x: face 0 (0, 3, 2) is below-left (y > x), face 1 above-right; on-diagonal pixel
    # centres touch both and go to the lower face index.
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert torch.equal(frag.face_index[0, :, :8], torch.where(i >= j, 0, 1))


def test_matches_brute_force_reference():
    verts, faces = _random_mesh(0, 40, 32, batch=2)
    size = (32, 37)
    frag = Renderer(size, backend="torch").rasterize(verts, faces)
    ref = _brute_force(verts, faces, size)
    mismatch = (frag.face_index != ref).float().mean()
    assert mismatch < 2e-3  # only exact edge ties may differ
    # Small chunks give the same result as one chunk.
    small = Renderer(size, backend="torch", chunk_size=200).rasterize(verts, faces)
    assert torch.equal(small.face_index, frag.face_index)
    # Batch items are independent.
    single = Renderer(size, backend="torch").rasterize(verts[1:], faces)
    assert torch.equal(single.face_index[0], frag.face_index[1])


def test_occlusion_nearer_triangle_wins():
    near = [[0.0, 0.0, 1.0], [8.0, 0.0, 1.0], [0.0, 8.0, 1.0]]
    far = [[0.0, 0.0, 3.0], [8.0, 0.0, 3.0], [0.0, 8.0, 3.0]]
    r = Renderer(8, backend="torch")
    for order, nearest in (((far, near), 1), ((near, far), 0)):
        verts = torch.tensor([order[0] + order[1]])
        frag = r.rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]))
        assert torch.all(frag.face_index[frag.mask] == nearest)
        assert torch.allclose(frag.depth[frag.mask], torch.tensor(1.0))
    # Interpenetrating triangles: the depth test is per pixel.
    verts = torch.tensor([[[0.0, 0.0, 1.0], [8.0, 0.0, 3.0], [0.0, 8.0, 1.0], [0.0, 0.0, 2.0], [8.0, 0, 2], [0, 8, 2]]])
    frag = r.rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]))
    assert (frag.face_index[0, 0, 0] == 0) and (frag.face_index[0, 0, 6] == 1)


def test_empty_when_off_screen_or_behind_camera():
    verts, faces = _square(8.0)
    r = Renderer(16, backend="torch")
    for shift in ([-20.0, 0.0, 0.0], [0.0, 30.0, 0.0], [17.0, 17.0, 0.0]):
        frag = r.rasterize(verts + torch.tensor(shift), faces)
        assert not frag.mask.any() and torch.all(frag.face_index == -1)
    behind = verts.clone()
    behind[..., 2] = -1.0
    assert not r.rasterize(behind, faces).mask.any()
    out = r.render_colors(verts + torch.tensor([100.0, 0, 0]), faces, torch.ones(4, 3), background=0.25)
    assert torch.all(out.image == 0.25)
    # Partially visible: clipped to the image.
    frag = r.rasterize(verts + torch.tensor([12.0, -4.0, 0.0]), faces)
    assert frag.mask[0, :4, 12:].all() and frag.mask.sum() == 16


def test_backface_culling_winding():
    verts, faces = _square(8.0)
    r = Renderer(8, backend="torch", cull_backfaces=True)
    assert r.rasterize(verts, faces).mask.all()  # viewer-CCW faces are front facing
    assert not r.rasterize(verts, faces.flip(1)).mask.any()
    assert Renderer(8, backend="torch").rasterize(verts, faces.flip(1)).mask.all()


def test_perspective_correct_barycentrics():
    verts = torch.tensor([[[0.0, 0.0, 1.0], [16.0, 0.0, 4.0], [0.0, 16.0, 1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    frag = Renderer(16, backend="torch").rasterize(verts, faces)
    lin = Renderer(16, backend="torch", perspective_correct=False).rasterize(verts, faces)
    s = lin.bary[0, 3, 5]  # screen-space barycentrics at p = (5.5, 3.5)
    assert torch.allclose(s, torch.tensor([1 - 5.5 / 16 - 3.5 / 16, 5.5 / 16, 3.5 / 16]), atol=1e-6)
    w = s / torch.tensor([1.0, 4.0, 1.0])
    assert torch.allclose(frag.bary[0, 3, 5], w / w.sum(), atol=1e-6)
    assert torch.allclose(frag.depth[0, 3, 5], 1 / w.sum(), atol=1e-5)


def test_gradcheck_photometric_wrt_vertices_and_colors():
    # Float64 finite differences: moving a vertex moves the interpolated colours exactly as the gradient predicts
    # (the perturbation is far too small to change which pixel centres are covered).
    verts = torch.tensor([[[1.3, 1.1, 2.0], [9.7, 2.2, 3.0], [2.4, 10.6, 2.5], [10.9, 11.2, 1.5]]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [1, 2, 3]])
    colors = torch.rand(1, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = torch.rand(1, 12, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    r = Renderer(12, backend="torch")

    def loss(v, c):
        return (r.render_colors(v, faces, c).image - target).square().sum().unsqueeze(0)

    v = verts.clone().requires_grad_(True)
    c = colors.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (v, c), eps=1e-6, atol=1e-6)
    loss(v, c).sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad[..., :2].abs().sum() > 0 and v.grad[..., 2].abs().sum() > 0
    assert torch.isfinite(c.grad).all() and c.grad.abs().sum() > 0
    # Explicit check: d image / d x of one vertex, by central differences.
    step = 1e-4
    plus, minus = verts.clone(), verts.clone()
    plus[0, 1, 0] += step
    minus[0, 1, 0] -= step
    fd = (loss(plus, colors) - loss(minus, colors)) / (2 * step)
    assert torch.allclose(v.grad[0, 1, 0], fd[0], rtol=1e-4, atol=1e-8)


def test_interpolate_shapes_and_unbatched_attributes():
    verts, faces = _square(8.0)
    r = Renderer(8, backend="torch")
    frag = r.rasterize(verts[0], faces)  # (N, 3) accepted
    attrs = torch.tensor([[0.0], [1.0], [1.0], [0.0]])  # value = x / 8 (bilinear on the square)
    out = r.interpolate(frag, attrs, faces)
    assert out.shape == (1, 8, 8, 1)
    assert torch.allclose(out[0, :, :, 0], ((torch.arange(8.0) + 0.5) / 8).expand(8, 8), atol=1e-6)


def test_render_colors_and_background():
    verts, faces = _square(8.0)
    r = Renderer(16, backend="torch")
    colors = torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3)
    out = r.render_colors(verts, faces, colors)
    assert isinstance(out, RenderOutput)
    assert out.image.shape == (1, 16, 16, 3) and out.mask.shape == (1, 16, 16) and out.depth.shape == (1, 16, 16)
    assert torch.allclose(out.image[0, :8, :8], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.all(out.image[0, 8:] == 0)
    out = r.render_colors(verts, faces, colors, background=(0.0, 0.0, 1.0))
    assert torch.all(out.image[0, 8:] == torch.tensor([0.0, 0.0, 1.0]))
    bg = torch.rand(16, 16, 3, requires_grad=True)
    out = r.render_colors(verts, faces, colors, background=bg)
    assert torch.equal(out.image[0, 8:], bg[8:].detach()) and torch.allclose(out.image[0, 0, 0], colors[0])
    out.image.sum().backward()
    assert bg.grad[8:].eq(1).all() and bg.grad[:8, :8].eq(0).all()


def test_render_texture_samples_right_texel():
    # A quad covering a 4x4 image with uv (0, 1) at the top-left: pixel centres fall on texel centres, so the image
    # reproduces the texture exactly (row 0 of the texture image = top = v near 1).
    verts, faces = _square(4.0)
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    texture = torch.rand(1, 4, 4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    r = Renderer(4, backend="torch")
    out = r.render_texture(verts, faces, uv, faces, texture)
    assert torch.allclose(out.image, texture, atol=1e-5)
    out.image[0, 1, 2].sum().backward()
    assert texture.grad[0, 1, 2].eq(1).all() and texture.grad.sum() == 3
    # A separate uv topology (face_uv_index != faces) and an unbatched texture.
    uv2 = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    out2 = r.render_texture(verts, faces, uv2, torch.tensor([[1, 0, 3], [1, 3, 2]]), texture[0].detach())
    assert torch.allclose(out2.image, texture.detach(), atol=1e-5)
    # Uncovered pixels get the background (zeros by default), not the texel at uv (0, 0).
    small = r.render_texture(verts * torch.tensor([0.5, 0.5, 1.0]), faces, uv, faces, texture.detach() + 1)
    assert small.mask[0, :2, :2].all() and small.mask.sum() == 4
    assert torch.all(small.image[0, 2:] == 0) and torch.all(small.image[0, :2, :2] >= 1)
    small = r.render_texture(verts * 0.5, faces, uv, faces, texture.detach(), background=(0.0, 1.0, 0.0))
    assert torch.all(small.image[0, 3] == torch.tensor([0.0, 1.0, 0.0]))


def test_texture_gradient_reaches_vertices():
    verts, faces = _square(6.0)
    verts = (verts + torch.tensor([1.0, 1.0, 0.0])).requires_grad_(True)
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    texture = torch.linspace(0, 1, 8).view(1, 1, 8, 1).expand(1, 8, 8, 3).contiguous()
    out = Renderer(8, backend="torch").render_texture(verts, faces, uv, faces, texture)
    out.image.sum().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad[..., 0].abs().sum() > 0


def test_invalid_inputs():
    with pytest.raises(ValueError):
        Renderer(0)
    with pytest.raises(ValueError):
        Renderer(8, backend="opengl")
    r = Renderer(8, backend="torch")
    with pytest.raises(ValueError):
        r.rasterize(torch.zeros(1, 3, 2), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError):
        r.rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 3]]))
    frag = r.rasterize(torch.zeros(2, 0, 3), torch.zeros(0, 3, dtype=torch.long))
    assert frag.face_index.shape == (2, 8, 8) and not frag.mask.any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    verts, faces = _random_mesh(1, 60, 48, batch=2)
    r = Renderer(48, backend="torch")
    cpu = r.rasterize(verts, faces)
    gpu = r.rasterize(verts.cuda(), faces.cuda())
    assert torch.equal(gpu.face_index.cpu(), cpu.face_index)
    assert torch.allclose(gpu.bary.cpu(), cpu.bary, atol=1e-5)
    v = verts.cuda().requires_grad_(True)
    r.render_colors(v, faces.cuda(), torch.rand(2, 180, 3, device="cuda")).image.sum().backward()
    assert torch.isfinite(v.grad).all()


@pytest.mark.skipif(not pytorch3d_available(), reason="pytorch3d not importable")
def test_pytorch3d_backend_agrees():
    verts, faces = _random_mesh(2, 60, 48, batch=2)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        v, f = verts.to(device), faces.to(device)
        ours = Renderer((48, 40), backend="torch").rasterize(v, f)
        p3d = Renderer((48, 40), backend="pytorch3d").rasterize(v, f)
        agree = (ours.face_index == p3d.face_index).float().mean()
        assert agree > 0.995  # edge ties may be resolved differently
        same = ours.face_index == p3d.face_index
        assert torch.allclose(ours.bary[same], p3d.bary[same], atol=1e-5)


def test_fragments_from_face_index_reuses_visibility():
    verts, faces = _random_mesh(3, 20, 24, batch=2)
    r = Renderer(24, backend="torch")
    frag = r.rasterize(verts, faces)
    again = r.fragments_from_face_index(verts, faces, frag.face_index)
    assert torch.equal(again.face_index, frag.face_index)
    assert torch.allclose(again.bary, frag.bary) and torch.allclose(again.depth, frag.depth)
    moved = (verts + 0.01).requires_grad_(True)
    out = r.render_colors(
        moved, faces, torch.rand(60, 3), fragments=r.fragments_from_face_index(moved, faces, frag.face_index)
    )
    out.image.sum().backward()
    assert torch.isfinite(moved.grad).all()


def test_interpolate_broadcasts_attributes_over_batch():
    verts, faces = _random_mesh(4, 20, 24, batch=3)
    r = Renderer(24, backend="torch")
    frag = r.rasterize(verts, faces)
    attrs = torch.rand(60, 4)
    a = r.interpolate(frag, attrs, faces)
    b = r.interpolate(frag, attrs[None], faces)
    c = r.interpolate(frag, attrs.expand(3, 60, 4), faces)
    assert a.shape == (3, 24, 24, 4) and torch.allclose(a, b) and torch.allclose(a, c)
    with pytest.raises(ValueError):
        r.interpolate(frag, torch.rand(2, 60, 4), faces)


def test_backend_selection():
    assert Renderer(8).backend_for(torch.device("cpu")) == "torch"
    if pytorch3d_available():
        assert Renderer(8).backend_for(torch.device("cuda")) == "pytorch3d"
    else:
        assert Renderer(8).backend_for(torch.device("cuda")) == "torch"
        with pytest.raises(ImportError):
            Renderer(8, backend="pytorch3d")


def _fake_pytorch3d(monkeypatch):
    """Minimal stand-in for pytorch3d's Meshes / rasterize_meshes following its documented conventions (NDC +x left,
    +y up, shorter side in [-1, 1], pixel centres at pix_to_non_square_ndc, packed face indices), brute force."""
    import sys
    import types

    class Meshes:
        def __init__(self, verts, faces):
            self.verts, self.faces = verts, faces

    def pix_to_ndc(i, s1, s2):
        rng = 2.0 * max(s1 / s2, 1.0)
        return -rng / 2 + (rng * i + rng / 2) / s1

    def rasterize_meshes(meshes, image_size, blur_radius, faces_per_pixel, perspective_correct, cull_backfaces):
        h, w = image_size
        assert blur_radius == 0 and faces_per_pixel == 1 and perspective_correct and not cull_backfaces
        n_faces = meshes.faces.shape[1]
        xs = pix_to_ndc(w - 1 - torch.arange(w, dtype=torch.float64), w, h)
        ys = pix_to_ndc(h - 1 - torch.arange(h, dtype=torch.float64), h, w)
        p = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 1, 2)
        out = []
        for vb, fb in zip(meshes.verts.double(), meshes.faces):
            t = vb[fb]  # (F, 3, 3)

            def edge(a, b):
                return (p[..., 0] - a[:, 0]) * (b[:, 1] - a[:, 1]) - (p[..., 1] - a[:, 1]) * (b[:, 0] - a[:, 0])

            v0, v1, v2 = t[:, 0, :2], t[:, 1, :2], t[:, 2, :2]
            area = (v2[:, 0] - v0[:, 0]) * (v1[:, 1] - v0[:, 1]) - (v2[:, 1] - v0[:, 1]) * (v1[:, 0] - v0[:, 0])
            bary = torch.stack((edge(v1, v2), edge(v2, v0), edge(v0, v1)), -1) / area[:, None]
            inside = (bary > 0).all(-1) & (area != 0)
            wz = bary / t[None, :, :, 2]
            z = 1 / wz.sum(-1)
            z = torch.where(inside, z, torch.full_like(z, float("inf")))
            best = z.argmin(1)
            out.append(torch.where(torch.isfinite(z.min(1).values), best + len(out) * n_faces, -1).reshape(h, w))
        pix_to_face = torch.stack(out)[..., None]
        return pix_to_face, None, None, None

    mods = {
        name: types.ModuleType(name)
        for name in ("pytorch3d", "pytorch3d.renderer", "pytorch3d.renderer.mesh", "pytorch3d.structures")
    }
    mods["pytorch3d.renderer.mesh"].rasterize_meshes = rasterize_meshes
    mods["pytorch3d.structures"].Meshes = Meshes
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.mark.parametrize("size", [(32, 32), (24, 36), (36, 24)])
def test_pytorch3d_screen_to_ndc_conversion_with_stand_in(monkeypatch, size):
    """Checks the pytorch3d plumbing (NDC conversion, packed indices, culled faces) against a stand-in."""
    from msma import render

    _fake_pytorch3d(monkeypatch)
    verts, faces = _random_mesh(5, 30, 32, batch=2)
    x, y, z = render._corner_coords(verts, faces)
    valid = render._valid_faces(x, y, z, 1e-3, True)
    ours = render._visibility_torch(x, y, z, valid, size, 1 << 18)
    p3d = render._visibility_pytorch3d(verts, faces, valid, size)
    assert (ours == p3d).float().mean() > 0.995
    assert ours.ge(0).any() and not valid.all()  # some faces are culled (back facing) ...
    for b in range(2):  # ... and never drawn
        assert valid[b, p3d[b][p3d[b] >= 0]].all()
