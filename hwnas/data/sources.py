"""Readers that turn each data source into uint8 arrays: digits, CIFAR-10, ImageFolder layouts."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from hwnas.data.cache import load_arrays, save_arrays, source_key
from hwnas.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif", ".tif", ".tiff")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

Arrays = dict[str, np.ndarray]  # train_x, train_y, [test_x, test_y]; x uint8 (N, 3, H, W)


def read_digits() -> Arrays:
    """scikit-learn's 8x8 digits (values 0..16), as 3-channel uint8 images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    x = np.repeat(x[:, None], 3, axis=1)
    return {"train_x": x, "train_y": d.target.astype(np.int64)}


def _decode(data: bytes, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _folder_layout_error(path: Path) -> UserError:
    return UserError(
        f"{path} is not in a layout hwnas reads; expected ImageFolder layout (train/<class>/<image> and "
        f"optionally test/<class>/<image>, or <class>/<image> directly), a tar.gz of it, or torchvision's "
        f"CIFAR-10 folder (cifar-10-batches-py/)")


def _collect(entries: list[tuple[str, str, bytes | Path]], size: int | None, path: Path) -> tuple[Arrays, list[str]]:
    """entries: (split, class, data-or-path). Classes are sorted names, as ImageFolder does."""
    classes = sorted({c for _, c, _ in entries})
    if not classes:
        raise _folder_layout_error(path)
    index = {c: i for i, c in enumerate(classes)}
    # one image of each class decodes before all are: a folder of files that only look like
    # images is refused at once, not after decoding thousands
    first: dict[str, bytes | Path] = {}
    for _, cls, data in entries:
        first.setdefault(cls, data)
    for cls, data in first.items():
        try:
            _decode(data.read_bytes() if isinstance(data, Path) else data, size)
        except Exception as e:  # PIL raises many types for bad files
            raise UserError(f"cannot decode an image of class {cls!r} in {path} ({data if isinstance(data, Path) else 'in the archive'}): "
                            f"{e}; remove or fix it") from None
    out: Arrays = {}
    for split in ("train", "test"):
        items = sorted((e for e in entries if e[0] == split), key=lambda e: (e[1], str(e[2]) if isinstance(e[2], Path) else ""))
        if not items:
            continue
        imgs, labels = [], []
        for _, cls, data in items:
            raw = data.read_bytes() if isinstance(data, Path) else data
            try:
                imgs.append(_decode(raw, size))
            except Exception as e:  # PIL raises many types for bad files
                raise UserError(f"cannot decode an image of class {cls!r} in {path}: {e}; remove or fix it") from None
            labels.append(index[cls])
        shapes = {a.shape for a in imgs}
        if len(shapes) > 1:
            raise UserError(f"images in {path} have different sizes {sorted(shapes)[:3]}...; pass an input size to resize them")
        out[f"{split}_x"] = np.stack(imgs)
        out[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
    if "train_x" not in out:
        raise _folder_layout_error(path)
    return out, classes


def _folder_entries(path: Path) -> list[tuple[str, str, bytes | Path]]:
    """The images of both layouts, looking only where they can be (``split/class/image`` and
    ``class/image``): a folder that is not a dataset (a home folder, a repository) is refused in
    a moment instead of after a walk through all of it."""
    def images(folder: Path) -> list[Path]:
        return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())

    def folders(folder: Path) -> list[Path]:
        return sorted(d for d in folder.iterdir() if d.is_dir())

    entries: list[tuple[str, str, bytes | Path]] = []
    try:
        for top in folders(path):
            if top.name in ("train", "test"):
                entries += [(top.name, c.name, f) for c in folders(top) for f in images(c)]
            else:
                entries += [("train", top.name, f) for f in images(top)]
    except PermissionError as e:
        raise UserError(f"cannot read {e.filename}: permission denied; point at a folder you can read") from None
    return entries


def _split_and_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """Map a relative path's parts to (split, class) for both layouts."""
    if len(parts) == 3 and parts[0] in ("train", "test"):
        return parts[0], parts[1]
    if len(parts) == 2 and parts[0] not in ("train", "test"):
        return "train", parts[0]
    return None


def read_image_tree(path: Path, size: int | None) -> tuple[Arrays, list[str]]:
    """An ImageFolder layout on disk or inside a .tar/.tar.gz, decoded once and cached."""
    if not path.exists():
        raise UserError(f"dataset path {str(path)!r} does not exist; expected an ImageFolder folder "
                        f"(train/<class>/<image>) or a .tar.gz of one")
    key = source_key(path, size, "v1")
    cached = load_arrays(f"images-{key}.npz")
    if cached is not None and "classes" in cached:
        classes = [str(c) for c in cached.pop("classes")]
        return cached, classes
    entries: list[tuple[str, str, bytes | Path]] = []
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                for m in tar:
                    if not m.isfile() or not m.name.lower().endswith(IMAGE_SUFFIXES):
                        continue
                    parts = tuple(p for p in Path(m.name).parts if p not in (".", ""))
                    sc = _split_and_class(parts) or (_split_and_class(parts[1:]) if len(parts) > 1 else None)
                    if sc is None:
                        continue
                    f = tar.extractfile(m)
                    if f is not None:
                        entries.append((sc[0], sc[1], f.read()))
        except tarfile.TarError as e:
            raise UserError(f"{path} is not a readable tar archive ({e}); pass a folder or a .tar.gz") from None
        entries.sort(key=lambda e: (e[0], e[1]))
    elif path.is_dir():
        entries = _folder_entries(path)
    else:
        raise UserError(f"dataset path {str(path)!r} does not exist")
    arrays, classes = _collect(entries, size, path)
    save_arrays(f"images-{key}.npz", {**arrays, "classes": np.asarray(classes)})
    return arrays, classes


def read_torchvision_cifar10(root: Path, download: bool) -> Arrays:
    """torchvision's CIFAR-10 folder. torchvision checks each batch file's MD5 against the
    official release before reading it, so only the genuine files are ever unpickled."""
    from torchvision.datasets import CIFAR10

    try:
        tr = CIFAR10(str(root), train=True, download=download)
        te = CIFAR10(str(root), train=False, download=download)
    except RuntimeError as e:
        raise UserError(f"no valid CIFAR-10 in {root} ({e}); pass --download to fetch it, or point at an ImageFolder copy") from None
    return {
        "train_x": np.ascontiguousarray(tr.data.transpose(0, 3, 1, 2)), "train_y": np.asarray(tr.targets, dtype=np.int64),
        "test_x": np.ascontiguousarray(te.data.transpose(0, 3, 1, 2)), "test_y": np.asarray(te.targets, dtype=np.int64),
    }
