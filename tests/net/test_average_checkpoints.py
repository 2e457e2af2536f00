"""scripts/average_checkpoints.py: the element-wise mean of checkpoints, metadata kept, other configs refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from msma.net import MSMANet, NetworkConfig, load_checkpoint, read_checkpoint_metadata, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "average_checkpoints.py"


def _model(seed: int, n_identity: int = 20) -> MSMANet:
    torch.manual_seed(seed)
    model = MSMANet(NetworkConfig.light(n_identity=n_identity, n_expression=7, n_texture=5))
    for p in model.heads.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_average_is_the_elementwise_mean(tmp_path):
    a, b = _model(0), _model(1)
    path_a = save_checkpoint(a, tmp_path / "a.safetensors", {"training": {"step": 5}})
    path_b = save_checkpoint(b, tmp_path / "b.safetensors")
    out = tmp_path / "soup" / "avg.safetensors"
    result = _run(str(path_a), str(path_b), "--out", str(out), "--no-fp16")
    assert result.returncode == 0, result.stderr
    soup = load_checkpoint(out).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in soup.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (sa[key] + sb[key]) / 2)
        else:
            assert torch.equal(value, sa[key])
    _, metadata = read_checkpoint_metadata(out)
    assert metadata["training"] == {"step": 5}
    assert metadata["averaged_from"] == [str(path_a), str(path_b)]


def test_different_configs_are_refused(tmp_path):
    path_a = save_checkpoint(_model(0), tmp_path / "a.safetensors")
    path_b = save_checkpoint(_model(1, n_identity=10), tmp_path / "b.safetensors")
    result = _run(str(path_a), str(path_b), "--out", str(tmp_path / "avg.safetensors"))
    assert result.returncode != 0
    assert "another network config" in result.stderr
    assert not (tmp_path / "avg.safetensors").exists()
