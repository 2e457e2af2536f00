"""MSMANet: output shapes, mean-face initialisation, gradients, ablation layout, parameter counts."""

from __future__ import annotations

import pytest
import torch

from msma.net import MLKA, CrossStageFusion, MSMANet, NetworkConfig
from msma.net.backbone import ResNetBackbone
from msma.net.heads import DEFAULT_AMBIENT, EXPRESSION_LOGIT_OFFSET, MultiAttributeHeads
from msma.net.mlka import LayerNorm2d

CONFIGS = {
    "light": NetworkConfig.light(),
    "paper": NetworkConfig.paper(),
    "ablation": NetworkConfig.plain_resnet(width=0.5),
}


def _expected_shapes(cfg: NetworkConfig, b: int) -> dict[str, tuple[int, int]]:
    return {
        "identity": (b, cfg.n_identity),
        "expression": (b, cfg.n_expression),
        "texture": (b, cfg.n_texture),
        "angles": (b, 3),
        "translation": (b, 3),
        "lighting": (b, 27),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, MSMANet]:
    torch.manual_seed(0)
    return {name: MSMANet(cfg).eval() for name, cfg in CONFIGS.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_output_shapes(models, name):
    model = models[name]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == _expected_shapes(model.config, 2)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_resolution_agnostic_odd_size(models):
    with torch.no_grad():
        out = models["light"](torch.rand(1, 3, 100, 84))  # stage maps 13x11, 7x6, 4x3
    assert out["identity"].shape == (1, 100)


def test_rejects_bad_input(models):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        models["light"](torch.rand(2, 64, 64))
    with pytest.raises(ValueError, match="at least 32"):
        models["light"](torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("name", ["light", "ablation"])
def test_zero_init_predicts_mean_face(models, name):
    model = models[name]
    a = torch.rand(1, 3, 64, 64)
    b = 1.0 - a
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    for key in out_a:
        torch.testing.assert_close(out_a[key], out_b[key], rtol=0, atol=0)
    assert torch.count_nonzero(out_a["identity"]) == 0
    assert torch.count_nonzero(out_a["texture"]) == 0
    assert torch.count_nonzero(out_a["angles"]) == 0
    assert torch.count_nonzero(out_a["translation"]) == 0
    expected_exp = torch.sigmoid(torch.tensor(EXPRESSION_LOGIT_OFFSET))
    torch.testing.assert_close(out_a["expression"], expected_exp.expand(1, 53))
    # raw SH coefficients; msma.face_model adds the 0.8 ambient term to the DC band itself
    assert DEFAULT_AMBIENT == 0.0 and torch.count_nonzero(out_a["lighting"]) == 0


def test_paper_expression_is_unbounded(models):
    with torch.no_grad():
        out = models["paper"](torch.rand(1, 3, 64, 64))
    assert torch.count_nonzero(out["expression"]) == 0  # no sigmoid: zero-init -> 0


def test_backward_reaches_every_stage():
    torch.manual_seed(0)
    model = MSMANet(NetworkConfig.light()).train()
    # make heads and attention non-trivial so gradients flow through every branch
    for p in list(model.heads.parameters()) + [blk.scale for blk in model.attention]:
        torch.nn.init.normal_(p, std=0.01)
    out = model(torch.rand(2, 3, 64, 64))
    loss = sum(v.square().mean() for v in out.values())
    loss.backward()
    assert model.backbone.body.conv1.weight.grad is not None and model.backbone.body.conv1.weight.grad.abs().sum() > 0
    for blk in model.attention:
        assert blk.proj_in.weight.grad.abs().sum() > 0
    assert model.fusion.transforms[2][0][0].weight.grad.abs().sum() > 0  # stage 2 -> stage 4 down path
    assert model.fusion.transforms[0][2][0].weight.grad.abs().sum() > 0  # stage 4 -> stage 2 up path
    assert all(layer.weight.grad.abs().sum() > 0 for layer in model.heads.fc.values())


def test_ablation_has_no_fusion_or_attention(models):
    model = models["ablation"]
    assert model.fusion is None and model.attention is None
    assert not any(isinstance(m, (CrossStageFusion, MLKA)) for m in model.modules())
    assert set(model.heads.stage_of.values()) == {2}  # every head reads the last stage
    assert not any("fusion" in k or "attention" in k for k in model.state_dict())
    assert set(models["light"].heads.stage_of.values()) == {0, 1, 2}


def test_ablation_is_plain_resnet_regressor():
    torch.manual_seed(0)
    model = MSMANet(NetworkConfig.plain_resnet(width=0.5)).eval()
    for p in model.heads.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        normed = (x - model.pixel_mean) / model.pixel_std
        pooled = model.backbone(normed)[3].mean((2, 3))  # (B, C4)
        out = model(x)
        fc = model.heads.fc
    torch.testing.assert_close(out["identity"], fc["identity"](pooled))
    torch.testing.assert_close(out["angles"], fc["angles"](pooled))
    torch.testing.assert_close(out["translation"][:, :2], fc["translation_xy"](pooled))


def test_parameter_counts(models):
    counts = {name: m.num_parameters() for name, m in models.items()}
    # ResNet-50 trunk alone: 23.5 M (torchvision without fc)
    assert sum(p.numel() for p in ResNetBackbone("resnet50").parameters()) == 23_508_032
    assert sum(p.numel() for p in ResNetBackbone("resnet18").parameters()) == 11_176_512
    assert 2.5e6 < counts["ablation"] < 3.2e6
    assert counts["ablation"] < counts["light"] < 6e6
    assert 60e6 < counts["paper"] < 100e6


def test_config_round_trip_and_validation():
    for cfg in CONFIGS.values():
        assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="backbone"):
        NetworkConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="unknown NetworkConfig"):
        NetworkConfig.from_dict({"nope": 1})
    assert NetworkConfig.plain_resnet().uses_multi_depth_heads is False
    assert NetworkConfig(fusion=False).uses_multi_depth_heads is True


def test_ambient_option_adds_to_dc_band_only():
    heads = MultiAttributeHeads((8, 8, 8), 2, 2, 2, ambient=0.8)
    feats = [torch.randn(1, 8, 2, 2) for _ in range(3)]
    light = heads(feats)["lighting"].view(1, 3, 9)  # colour-major, DC band first
    torch.testing.assert_close(light[:, :, 0], torch.full((1, 3), 0.8))
    assert torch.count_nonzero(light[:, :, 1:]) == 0


def test_layernorm2d_matches_channel_statistics():
    norm = LayerNorm2d(6)
    x = torch.randn(2, 6, 5, 4) * 3 + 1
    mean = x.mean(1, keepdim=True)
    ref = (x - mean) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + norm.eps)
    torch.testing.assert_close(norm(x), ref, rtol=1e-4, atol=1e-5)


def test_mlka_starts_as_identity_and_handles_uneven_groups():
    blk = MLKA(10)  # groups 3, 3, 4
    x = torch.randn(2, 10, 9, 9)
    torch.testing.assert_close(blk(x), x)
    torch.nn.init.ones_(blk.scale)
    assert blk(x).shape == x.shape


@pytest.mark.parametrize("map_size, reach", [(None, 19), (14, 8)])
def test_mlka_reaches_as_far_as_its_kernels(map_size, reach):
    """An output pixel depends on inputs up to the widest branch's reach and no further: LKA_7 = DW7 -> DW9 with
    dilation 4 reaches 3 + 4 * 4 = 19 px at the paper's dilations; on a 14 px map the dilations drop to (2, 2, 1) and
    LKA_5 (2 + 3 * 2 = 8 px) reaches furthest. And with a non-zero scale the block changes its input."""
    torch.manual_seed(0)
    blk = MLKA(12, scale_init=1.0, map_size=map_size)
    x = torch.randn(1, 12, 64, 64, requires_grad=True)
    y = blk(x)
    assert (y - x).abs().mean() > 1e-3
    y[0, :, 32, 32].sum().backward()
    influence = x.grad[0].abs().sum(0)  # (64, 64)
    offsets = (torch.nonzero(influence > 0) - 32).abs()
    assert int(offsets.max()) == reach
    assert influence[32, 32 + reach] > 0 and influence[32 + reach, 32] > 0
