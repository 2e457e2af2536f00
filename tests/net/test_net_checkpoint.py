"""safetensors checkpoints: round trips (fp32 / fp16), stored config, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from msma.net import (
    CheckpointMismatchError,
    MSMANet,
    NetworkConfig,
    load_checkpoint,
    load_weights,
    read_checkpoint_metadata,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def trained_like() -> MSMANet:
    """A light model with random (non-zero) heads and BN statistics, so outputs depend on the weights."""
    torch.manual_seed(0)
    model = MSMANet(NetworkConfig.light(n_identity=20, n_expression=7, n_texture=5))
    for p in model.heads.parameters():
        torch.nn.init.normal_(p, std=0.05)
    for blk in model.attention:
        torch.nn.init.normal_(blk.scale, std=0.1)
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, 64, 64))  # update BN running stats
    return model.eval()


@pytest.mark.parametrize("fp16", [False, True])
def test_round_trip(tmp_path, trained_like, fp16):
    path = save_checkpoint(trained_like, tmp_path / "sub" / "net.safetensors", {"epoch": 3, "note": "x"}, fp16=fp16)
    loaded = load_checkpoint(path)
    assert loaded.config == trained_like.config
    assert not loaded.training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = trained_like(x), loaded(x)
    tol = {"rtol": 2e-2, "atol": 2e-3} if fp16 else {"rtol": 0, "atol": 0}
    for key in ref:
        assert out[key].dtype == torch.float32
        torch.testing.assert_close(out[key], ref[key], **tol)
    config, metadata = read_checkpoint_metadata(path)
    assert config == trained_like.config and metadata == {"epoch": 3, "note": "x"}
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        dtype = f.get_tensor("backbone.body.conv1.weight").dtype
        steps = f.get_tensor("backbone.body.bn1.num_batches_tracked")
    assert json.loads(header["config"])["n_identity"] == 20
    assert dtype == (torch.float16 if fp16 else torch.float32)
    assert steps.dtype == torch.int64  # integer buffers are never cast
    assert not any("pixel_mean" in k for k in loaded.state_dict())


def test_fp16_file_is_smaller(tmp_path, trained_like):
    a = save_checkpoint(trained_like, tmp_path / "a.safetensors", {})
    b = save_checkpoint(trained_like, tmp_path / "b.safetensors", {}, fp16=True)
    assert b.stat().st_size < 0.6 * a.stat().st_size


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_checkpoint(path)


def test_layout_mismatch_names_file_keys_and_shapes(tmp_path, trained_like):
    path = save_checkpoint(trained_like, tmp_path / "light.safetensors", {})
    other = NetworkConfig.light(n_identity=30, n_expression=7, n_texture=5)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(path, config=other)
    msg = str(err.value)
    assert str(path) in msg
    assert "heads.fc.identity.weight" in msg and "expected [30, 256], found [20, 256]" in msg
    assert "heads.fc.identity.bias" in msg and "expected [30], found [20]" in msg
    assert isinstance(err.value, ValueError)


def test_missing_and_unexpected_keys(tmp_path, trained_like):
    path = save_checkpoint(trained_like, tmp_path / "light.safetensors", {})
    ablation = MSMANet(NetworkConfig.plain_resnet(width=0.5, n_identity=20, n_expression=7, n_texture=5))
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(ablation, path)
    msg = str(err.value)
    assert str(path) in msg and "unexpected key(s)" in msg and "attention.0." in msg
    assert "more" in msg  # long lists are shortened


def test_stored_config_contradicting_tensors(tmp_path, trained_like):
    """A file whose metadata says one layout and whose tensors are another (hand-edited / mixed-up export)."""
    path = tmp_path / "bad.safetensors"
    tensors = {k: v.contiguous() for k, v in trained_like.state_dict().items()}
    wrong = NetworkConfig.light(n_identity=100, n_expression=7, n_texture=5)
    save_file(tensors, str(path), metadata={"config": json.dumps(wrong.to_dict()), "metadata": "{}"})
    with pytest.raises(CheckpointMismatchError, match=r"expected \[100, 256\], found \[20, 256\]"):
        load_checkpoint(path)


def test_not_an_msma_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not an MSMA network checkpoint"):
        load_checkpoint(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        load_checkpoint(path)
