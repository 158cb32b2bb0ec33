"""Supernet checkpoints: tensors via ``torch.save`` (loaded with ``weights_only=True``) and a JSON
header naming the space and its config hash, so a checkpoint never loads into another space."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_bytes

FORMAT = "hwnas-supernet/1"


def save_checkpoint(path: str | Path, meta: dict[str, Any], model: dict[str, torch.Tensor],
                    optimizer: dict[str, Any] | None) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "meta": json.dumps(meta), "model": model, "optimizer": optimizer}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict, dict | None]:
    """(meta, model state dict, optimizer state dict); bad files raise ``UserError``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist; train one with `hwnas train-supernet --out {p}`")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...: all mean "not a checkpoint we wrote"
        raise UserError(f"checkpoint {str(p)!r} is corrupt or not an hwnas checkpoint ({type(e).__name__}); "
                        f"retrain it or resume from an intact copy") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{str(p)!r} is not an hwnas supernet checkpoint (format {FORMAT} expected)")
    try:
        meta = json.loads(obj["meta"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise UserError(f"checkpoint {str(p)!r} has a damaged header; retrain it") from None
    return meta, obj["model"], obj.get("optimizer")


def check_space(meta: dict[str, Any], space: Any, path: str | Path) -> None:
    from hwnas.space.ref import SpaceRef

    SpaceRef.from_record({**meta, "space": str(meta.get("space"))}).check(
        space, f"checkpoint {str(path)!r}", "use a checkpoint of this space or train one", made="trained")


def cpu_state(obj: Any) -> Any:
    """A state dict (or an optimizer's, nested) with every tensor detached and on the CPU, for saving."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_state(v) for v in obj]
    return obj
