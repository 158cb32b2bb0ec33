"""Where decoded datasets are cached: ``$HWNAS_CACHE`` or ``~/.cache/hwnas`` (never the repo)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from hwnas.fileio import atomic_write_bytes


def cache_dir() -> Path:
    root = os.environ.get("HWNAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwnas")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def shared_data_dir() -> Path:
    """``$HWNAS_SHARED_DATA``, else ``../shared/data`` beside the repository root."""
    env = os.environ.get("HWNAS_SHARED_DATA")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "data"


def source_key(path: Path, *extra: object) -> str:
    """Identifies a source file/folder by its absolute path, size and modification time."""
    st = path.stat()
    blob = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|" + "|".join(map(str, extra))
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_arrays(name: str) -> dict[str, np.ndarray] | None:
    p = cache_dir() / name
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):  # a damaged cache entry is rebuilt, never trusted
        return None


def save_arrays(name: str, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(cache_dir() / name, buf.getvalue())
