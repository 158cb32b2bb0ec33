"""Devices, mixed precision and torch.distributed setup shared by the training loops.

A process started by ``torchrun`` finds RANK/WORLD_SIZE/LOCAL_RANK in its environment and joins
the group (nccl on GPU, gloo on CPU); a plain process runs alone with the same code.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hwnas.errors import UserError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        # bf16 keeps fp32's exponent range, so no loss scaling is needed; CPU stays in fp32
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks in one flat buffer, divided by the world size.

        Every rank runs the same subnets on its share of the batch, so this equals
        DistributedDataParallel's reduction; doing it by hand after the sandwich's four
        backward passes avoids DDP's per-forward hooks, which assume one forward per step.
        """
        if not self.distributed:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    @torch.no_grad()
    def replicas_identical(self, model: torch.nn.Module) -> bool:
        """Whether every rank holds bit-identical parameters (gradient averaging kept them in step)."""
        if not self.distributed:
            return True
        flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
        lo, hi = flat.clone(), flat.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        return bool(torch.equal(lo, hi))

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        return torch.device("cuda", local_rank if name == "cuda" else int(name.split(":")[1]))
    if name != "cpu":
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def init_runtime(device: str = "auto") -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Runtime(resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world, True)


def cosine_lr(base: float, step: int, total: int, warmup: int = 0) -> float:
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * min(1.0, t)))


def step_seed(seed: int, epoch: int, step: int) -> int:
    """A seed for one training step, so that a resumed run replays the exact same randomness."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**31 - 1)
