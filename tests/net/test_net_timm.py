"""timm trunk, legacy checkpoints, MLKA dilations scaled to the maps, position-aware heads, partial init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from msma.net import MSMANet, NetworkConfig, load_checkpoint, save_checkpoint
from msma.net.checkpoint import load_matching_weights, remap_legacy_keys
from msma.net.mlka import scaled_dilation


def test_trunk_is_timm_resnet():
    net = MSMANet(NetworkConfig.light(n_identity=4, n_expression=3, n_texture=2))
    assert type(net.backbone.body).__module__.startswith("timm")
    assert net.backbone.channels == (32, 64, 128, 256)
    assert net.backbone.body.conv1.out_channels == 32  # the narrow stem of the light variant


def test_pretrained_needs_standard_width():
    from msma.net.backbone import ResNetBackbone

    with pytest.raises(ValueError, match="standard width"):
        ResNetBackbone("resnet18", width=0.5, pretrained=True)


def test_legacy_checkpoint_keys_load_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = NetworkConfig.light(n_identity=6, n_expression=5, n_texture=4, mlka_dilation="fixed")
    net = MSMANet(cfg)
    for p in net.heads.parameters():
        torch.nn.init.normal_(p, std=0.05)
    net.eval()
    path = save_checkpoint(net, tmp_path / "new.safetensors")
    # a format-1 file: the trunk's tensors without the "body." level, config without the new fields
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {k.replace("backbone.body.", "backbone."): f.get_tensor(k) for k in f.keys()}
    import json

    config = json.loads(header["config"])
    del config["mlka_dilation"], config["head_hidden"]
    header.update(config=json.dumps(config), format_version="1")
    save_file(tensors, str(tmp_path / "legacy.safetensors"), metadata=header)
    legacy = load_checkpoint(tmp_path / "legacy.safetensors")
    assert legacy.config.mlka_dilation == "fixed"  # old configs keep the dilations they were trained with
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = net(x), legacy(x)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)
    assert remap_legacy_keys({"backbone.body.x": 1}) == {"backbone.body.x": 1}


def test_shipped_weights_load():
    from msma.evaluate import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("no bundled weights")
    net = load_checkpoint(DEFAULT_WEIGHTS)
    out = net(torch.rand(1, 3, net.config.image_size, net.config.image_size))
    assert out["identity"].shape == (1, net.config.n_identity)


@pytest.mark.parametrize(("kernel", "dilation", "size", "expected"), [
    (9, 4, 28, 3),   # 224 px, stage 2: 33 px kernel -> 25 px
    (9, 4, 6, 1),    # 192 px, stage 4
    (5, 2, 24, 2),   # fits: unchanged
    (7, 3, 12, 1),
    (9, 4, None, 4),  # not scaled
])
def test_scaled_dilation(kernel, dilation, size, expected):
    assert scaled_dilation(kernel, dilation, size) == expected
    if size is not None and expected > 1:
        assert (kernel - 1) * expected + 1 <= size


def test_network_scales_dilations_to_its_input_size():
    small = MSMANet(NetworkConfig.light(image_size=128))
    paper = MSMANet(NetworkConfig.light(image_size=128, mlka_dilation="fixed"))
    assert [b.dilations for b in small.attention] == [(2, 2, 1), (1, 1, 1), (1, 1, 1)]
    assert all(b.dilations == (2, 3, 4) for b in paper.attention)
    assert NetworkConfig.paper().mlka_dilation == "fixed"


def test_spatial_heads_start_at_mean_face_and_see_position():
    torch.manual_seed(0)
    net = MSMANet(NetworkConfig.light(n_identity=6, n_expression=5, n_texture=4, head_hidden=16)).eval()
    x = torch.rand(2, 3, 96, 96)
    out = net(x, return_logits=True)
    assert torch.allclose(out["identity"], torch.zeros_like(out["identity"]))
    assert torch.allclose(out["expression"], torch.sigmoid(out["expression_logits"]))
    assert "expression_logits" not in net(x)
    # a globally pooled head cannot tell a feature map from its left-right mirror; the grid head can
    for p in net.heads.hidden.parameters():
        torch.nn.init.normal_(p, std=0.2)
    feats = [torch.zeros(1, c, 6, 6) for c in net.backbone.channels[1:]]
    feats[2][0, :, :, :2] = 1.0
    mirrored = [f.flip(-1) for f in feats]
    a, b = net.heads(feats)["expression"], net.heads(mirrored)["expression"]
    assert not torch.allclose(a, b)
    assert torch.allclose(net.heads(feats)["texture"], net.heads(mirrored)["texture"])  # pooled head


def test_matching_init_keeps_fitting_tensors(tmp_path):
    torch.manual_seed(0)
    small = MSMANet(NetworkConfig.light(n_identity=6, n_expression=5, n_texture=4))
    path = save_checkpoint(small, tmp_path / "a.safetensors")
    grown = MSMANet(NetworkConfig.light(n_identity=6, n_expression=5, n_texture=4, head_hidden=8))
    fresh = load_matching_weights(grown, path)
    assert fresh and all(k.startswith("heads.hidden.") for k in fresh)
    key = "backbone.body.layer2.0.conv1.weight"
    assert torch.equal(grown.state_dict()[key], small.state_dict()[key])


def test_expression_bce_term_has_unsaturated_gradient(model):
    from msma.face_model import Coefficients
    from msma.train import LossWeights, supervised_losses

    b = 2
    target = Coefficients.zeros(model, b)
    target.expression[:, 0] = 0.8
    logits = torch.full((b, model.n_expression), -4.0, requires_grad=True)
    pred = Coefficients.zeros(model, b)
    pred.expression = torch.sigmoid(logits)
    lm = np.zeros((b, 68, 2), np.float32)
    terms = supervised_losses(model, pred, target, torch.as_tensor(lm), LossWeights(expression_bce=1.0),
                              expression_logits=logits)
    g_bce, = torch.autograd.grad(terms["expression_bce"], logits, retain_graph=True)
    g_mse, = torch.autograd.grad(terms["expression"], logits)
    # d BCE / d logit = (p - t) / n; the MSE gradient carries the extra sigmoid slope p (1 - p) ~ 0.018
    p = float(torch.sigmoid(torch.tensor(-4.0)))
    assert float(g_bce[0, 0]) * model.n_expression * b == pytest.approx(p - 0.8, rel=1e-4)
    assert float(g_mse[0, 0]) / float(g_bce[0, 0]) == pytest.approx(2 * p * (1 - p), rel=1e-3)
