"""safetensors checkpoints for MSMANet: weights + the NetworkConfig (JSON) + free metadata, in one file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from msma.net.config import NetworkConfig
from msma.net.model import MSMANet

FORMAT = "msma-net"
# 1: hand-written ResNet trunk (keys "backbone.conv1.weight", ...); 2: timm trunk ("backbone.body.conv1.weight")
FORMAT_VERSION = "2"
_MAX_LISTED = 12


class CheckpointMismatchError(ValueError):
    """The tensors in a checkpoint do not fit the model layout (missing / unexpected keys, shape mismatches)."""


def save_checkpoint(
    model: MSMANet, path: str | Path, metadata: dict[str, Any] | None = None, fp16: bool = False
) -> Path:
    """Write `model`'s state dict to `path` (safetensors). Floating tensors are stored as float16 when fp16=True.

    The safetensors metadata holds: format, format_version, config (NetworkConfig JSON), metadata (JSON of
    `metadata`, must be JSON-serialisable) and dtype.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if fp16 and value.is_floating_point():
            value = value.to(torch.float16)
        tensors[key] = value.contiguous()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "metadata": json.dumps(metadata or {}),
        "dtype": "float16" if fp16 else "float32",
    }
    save_file(tensors, str(path), metadata=header)
    return path


def read_checkpoint_metadata(path: str | Path) -> tuple[NetworkConfig, dict[str, Any]]:
    """(config, user metadata) stored in a checkpoint, without reading the tensors."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own SafetensorError for a corrupt / foreign file
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    if "config" not in header:
        raise ValueError(f"{path} is not an MSMA network checkpoint (no 'config' in its safetensors metadata)")
    config = NetworkConfig.from_dict(json.loads(header["config"]))
    return config, json.loads(header.get("metadata", "{}"))


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", config: NetworkConfig | None = None
) -> MSMANet:
    """Build an MSMANet from the config stored in `path` (or `config` when given) and load its weights.

    Returns the model in eval mode, float32, on `device`.
    Raises FileNotFoundError (missing file) or CheckpointMismatchError (tensors do not fit the layout).
    """
    stored_config, _ = read_checkpoint_metadata(path)
    model = MSMANet(config if config is not None else stored_config)
    load_weights(model, path)
    return model.to(device).eval()


def load_weights(model: MSMANet, path: str | Path) -> MSMANet:
    """Load the tensors of `path` into an existing model (strict); CheckpointMismatchError names what differs.
    Format-1 files (hand-written trunk) are remapped to the timm layout on the way in."""
    path = _existing(path)
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    tensors = remap_legacy_keys(tensors)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        (k, tuple(expected[k].shape), tuple(tensors[k].shape))
        for k in sorted(set(expected) & set(tensors))
        if expected[k].shape != tensors[k].shape
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(_mismatch_message(path, missing, unexpected, wrong))
    state = {k: v.to(expected[k].dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model


def remap_legacy_keys(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Format-1 state dicts (the hand-written trunk) -> the timm layout: the trunk moved under ``backbone.body``
    with torchvision-style names unchanged. Already-current dicts are returned as they are."""
    if any(k.startswith("backbone.body.") for k in tensors):
        return tensors
    prefix = "backbone."
    return {("backbone.body." + k[len(prefix):]) if k.startswith(prefix) else k: v for k, v in tensors.items()}


def load_matching_weights(model: MSMANet, path: str | Path) -> list[str]:
    """Initialise ``model`` from every tensor of ``path`` whose name and shape fit (fine-tuning into a grown
    architecture, e.g. new heads); returns the names of the model's tensors left at their fresh initialisation."""
    path = _existing(path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = remap_legacy_keys({key: f.get_tensor(key) for key in f.keys()})
    state = model.state_dict()
    fits = {k: v.to(state[k].dtype) for k, v in tensors.items() if k in state and state[k].shape == v.shape}
    if not fits:
        raise CheckpointMismatchError(f"no tensor of {path} fits the model layout")
    model.load_state_dict(fits, strict=False)
    return sorted(set(state) - set(fits))


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network checkpoint not found: {path}")
    return path


def _listed(items: list[str]) -> str:
    more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _mismatch_message(
    path: Path, missing: list[str], unexpected: list[str], wrong: list[tuple[str, tuple, tuple]]
) -> str:
    lines = [f"checkpoint {path} does not match the model layout:"]
    if wrong:
        shown = [f"{k}: expected {list(e)}, found {list(f)}" for k, e, f in wrong]
        lines.append(f"  {len(wrong)} shape mismatch(es): " + _listed(shown))
    if missing:
        lines.append(f"  {len(missing)} key(s) missing from the file: " + _listed(missing))
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s) in the file: " + _listed(unexpected))
    lines.append("  (saved from a different NetworkConfig? pass the matching config, or re-export the checkpoint)")
    return "\n".join(lines)
