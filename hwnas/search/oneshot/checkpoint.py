"""The one-shot search's epoch checkpoint (``oneshot.ckpt``: network, logits, both optimizers and
where training stands) and what a resumed run keeps of its journal."""

from __future__ import annotations

import io
import json
from pathlib import Path

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_bytes, atomic_write_text, read_journal, read_json
from hwnas.search.runner import CONFIG_FILE, JOURNAL_FILE, _differences, _identity, json_roundtrip

CHECKPOINT_FILE = "oneshot.ckpt"
CHECKPOINT_FORMAT = "hwnas-oneshot/1"


def save_checkpoint(path: Path, meta: dict, tensors: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta), **tensors}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    import torch

    if not path.is_file():
        raise UserError(f"nothing to resume in {str(path.parent)!r}: it holds no {CHECKPOINT_FILE} (no training step had finished); start over with --force")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("format")
        meta = json.loads(obj["meta"])
    except Exception as e:  # truncated, foreign, damaged header: all mean "not a checkpoint we wrote"
        raise UserError(f"checkpoint {str(path)!r} is corrupt or not an hwnas one-shot checkpoint ({type(e).__name__}); "
                        f"start over with --force") from None
    return meta, obj


def load_for_resume(out: Path, described: dict) -> tuple[tuple[dict, dict], list[dict], list[str]]:
    stored = read_json(out / CONFIG_FILE, "run config")
    diffs = _differences(_identity(stored), _identity(json_roundtrip(described)))
    if diffs:
        raise UserError(f"cannot resume {str(out)!r}: it comes from a different configuration ({'; '.join(diffs[:4])}); "
                        f"rerun with the same options or use a new --out")
    meta, tensors = load_checkpoint(out / CHECKPOINT_FILE)
    records, dropped = read_journal(out / JOURNAL_FILE)
    notes = []
    if dropped:
        notes.append(f"journal {str(out / JOURNAL_FILE)!r} ended in {dropped} unreadable line(s) (an interrupted write); "
                     f"recovered the {len(records)} valid record(s) before it")
    # records of epochs after the checkpoint (journaled, then interrupted before the checkpoint
    # was written) are computed again; a final record stands only if training had finished
    done = int(meta["epoch"])
    keep = [r for r in records if r.get("kind") == "argmax" and int(r.get("epoch", 0)) <= done]
    if done >= int(described["strategy"]["epochs"]):  # the derivation's samples: scored on the final weights
        keep += [r for r in records if r.get("kind") == "sample"]
    if meta.get("finished"):
        keep += [r for r in records if r.get("kind") == "final"][:1]
    for k, r in enumerate(keep):
        if r.get("i") != k or "id" not in r or "accuracy" not in r:
            raise UserError(f"journal {str(out / JOURNAL_FILE)!r} record {k} is not a one-shot search record; start over with --force")
    if len(keep) != len(records) or dropped:
        atomic_write_text(out / JOURNAL_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
    return (meta, tensors), keep, notes
