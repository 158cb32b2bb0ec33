"""Supernet training under torchrun: 2 processes, gloo, on CPU, with the same command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from hwnas.accuracy.supernet.checkpoint import load_checkpoint
from hwnas.accuracy.supernet.train import load_supernet

SETTINGS = {"image_size": 8, "depths": [1, 2], "kernels": [3, 5], "expands": [3, 4],
            "widths": [[16, 24], [24, 32], [40, 48], [64, 80], [96, 112]]}


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HWNAS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hwnas.cli", "train-supernet", "--space-settings", json.dumps(SETTINGS), "--epochs", "1",
           "--train-limit", "128", "--batch-size", "32", "--device", "cpu", "--no-progress", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("wrote ") == 1  # only rank 0 reports (and writes)
    meta, sd, _ = load_checkpoint(out)
    assert meta["world"] == 2 and meta["done"]
    assert meta["replicas_identical"] is True  # averaged gradients kept both ranks' weights equal
    net, _ = load_supernet(out)
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    x = torch.randn(2, 3, 8, 8)
    assert net(x).shape == (2, 10)
