"""Distributed training: the training command run as 2 CPU processes (torchrun, gloo) trains in lockstep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from msma import train as train_mod

pytest.importorskip("accelerate")
ROOT = Path(__file__).resolve().parents[1]


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"i": torch.tensor(i)}


def test_loop_shards_global_batch_between_processes():
    loops = [train_mod._Loop(_Items(), 2, seed=3, rank=r, world=2) for r in range(2)]
    single = train_mod._Loop(_Items(), 4, seed=3)
    for _ in range(5):  # crosses an epoch boundary (10 items, global batch 4)
        parts = [loop.next()["i"].tolist() for loop in loops]
        assert not set(parts[0]) & set(parts[1])
        assert parts[0] + parts[1] == single.next()["i"].tolist()
    assert loops[0].state() == loops[1].state() == single.state()
    with pytest.raises(ValueError, match="global batch"):
        train_mod._Loop(_Items(), 6, seed=0, rank=0, world=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_train_in_lockstep(tmp_path):
    out = tmp_path / "run"
    launcher = tmp_path / "launch.py"
    # the module's own entry point, plus every rank's summary (only rank 0 writes files)
    launcher.write_text(textwrap.dedent(f"""
        import argparse, json, os, sys
        from msma import train as T
        args = T.add_arguments(argparse.ArgumentParser()).parse_args(sys.argv[1:])
        summary = T.train(T.config_from_args(args), progress=False)
        with open(os.path.join({str(tmp_path)!r}, "rank%s.json" % os.environ["RANK"]), "w") as f:
            json.dump(summary, f)
    """))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(launcher), "--config", "light", "--steps", "3",
           "--batch-size", "2", "--image-size", "48", "--out", str(out), "--threads", "1", "--device", "cpu",
           "--log-every", "1", "--save-every", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["processes"] == 2 and r["step"] == 3 for r in ranks)
    # gradients all-reduced: both replicas end with the same weights (each saw only its own half of the batch)
    assert ranks[0]["parameter_checksum"] == pytest.approx(ranks[1]["parameter_checksum"], rel=0, abs=1e-6)
    assert ranks[0]["images_seen"] == 3 * 2 * 2
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and state["world_size"] == 2
    bare = sum(np.float64(v.double().sum()) for k, v in state["model"].items() if "num_batches" not in k
               and "running" not in k)
    assert bare == pytest.approx(ranks[0]["parameter_checksum"], abs=1e-6)
