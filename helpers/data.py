"""Fashion-MNIST: find or prepare the files, validate them, hold them as tensors, yield minibatches.

Where the data comes from, first match wins:
  1. ``ROOT/FashionMNIST/raw`` (the four unpacked IDX files, torchvision's layout);
  2. the directory named by the environment variable ``FASHION_MNIST_DIR`` (``.gz`` or unpacked);
  3. Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``);
  4. torchvision's download (Colab, laptops with internet).
Sources 2-4 are copied/unpacked into ``ROOT/FashionMNIST/raw`` so later runs find them at once.
Debian's ``.gz`` files are unpacked here because their gzip headers fail torchvision's md5 check.

Run ``python -m helpers.data [--root DIR]`` to prepare and validate the data.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
               'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
IMAGE_SIZE = 28
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DIR = "FASHION_MNIST_DIR"
# split -> (images file, labels file, expected number of samples)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
FILE_NAMES = [name for images, labels, _ in FILES.values() for name in (images, labels)]
FIX = "delete it and run `python -m helpers.data` to prepare the data again"
HOW_TO_GET = (
    "No Fashion-MNIST data found and the download failed. Get it one of these ways:\n"
    "  - with internet: run `python -m helpers.data` (torchvision downloads it);\n"
    "  - on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`, then `python -m helpers.data`;\n"
    "  - elsewhere: put the four files (train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
    "    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, .gz or unpacked) in a folder and set\n"
    "    FASHION_MNIST_DIR to it, or unpack them into {raw}."
)


class DatasetError(RuntimeError):
    """The data is missing or damaged; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class FashionMNISTTensors:
    """The published train and test sets as in-memory tensors: images (N, 1, 28, 28) uint8, labels int64.

    One byte per pixel, as in the files: `splits.to_float` scales a minibatch to [0, 1] as ToTensor() does."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str


def load_fashion_mnist(root: str | Path = "data", download: bool = True) -> FashionMNISTTensors:
    """Return Fashion-MNIST as tensors, preparing the files under `root` first if needed (read once per process
    and kept: for the notebook; a worker reads it with `read_fashion_mnist` and keeps only its splits)."""
    return _load(Path(root).resolve(), download)


@functools.lru_cache(maxsize=4)
def _load(root: Path, download: bool) -> FashionMNISTTensors:
    return read_fashion_mnist(root, download)


def read_fashion_mnist(root: Path, download: bool = True) -> FashionMNISTTensors:
    """Fashion-MNIST as tensors, read afresh from the files under `root` (prepared first if needed)."""
    raw, source = prepare(Path(root).resolve(), download)
    tensors = []
    for split, (images_name, labels_name, expected) in FILES.items():
        images, labels = read_split(raw / images_name, raw / labels_name, expected)
        tensors += [images.unsqueeze(1), labels]
    return FashionMNISTTensors(*tensors, source=source)


def prepare(root: Path, download: bool = True) -> tuple[Path, str]:
    """Make sure the four unpacked files are in ROOT/FashionMNIST/raw; return that folder and the source used."""
    raw = root / "FashionMNIST" / "raw"
    if _missing(raw) == []:
        return raw, str(raw)
    if os.environ.get(ENV_DIR):  # an explicit folder must be complete: no silent fallback
        folder = Path(os.environ[ENV_DIR])
        lacking = [name for name in _missing(raw) if not _find(folder, name)]
        if lacking:
            raise DatasetError(f"{ENV_DIR}={folder} lacks {', '.join(lacking)} (.gz or unpacked): "
                               f"put all four Fashion-MNIST files there, or unset {ENV_DIR}.")
        return _copy_missing(folder, raw), str(folder)
    if all(_find(DEBIAN_DIR, name) for name in _missing(raw)):
        return _copy_missing(DEBIAN_DIR, raw), str(DEBIAN_DIR)
    if download:
        try:
            from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST
            TorchvisionFashionMNIST(str(root), train=True, download=True)
        except Exception as error:  # offline, proxy, full disk: all end in the same advice
            raise DatasetError(HOW_TO_GET.format(raw=raw) + f"\n(download error: {error})") from None
        if _missing(raw) == []:
            return raw, "torchvision download"
    raise DatasetError(HOW_TO_GET.format(raw=raw))


def _copy_missing(folder: Path, raw: Path) -> Path:
    """Copy or unpack the files `raw` lacks from `folder`; return `raw`."""
    for name in _missing(raw):
        _unpack(_find(folder, name), raw / name)
    return raw


def _missing(raw: Path) -> list[str]:
    return [name for name in FILE_NAMES if not (raw / name).is_file()]


def _find(folder: Path, name: str) -> Path | None:
    """Return folder/name or folder/name.gz, whichever exists."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _unpack(source: Path, target: Path) -> None:
    """Copy `source` (gunzipping a .gz) to `target` atomically, so an interruption never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    try:
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        partial.unlink(missing_ok=True)
        raise DatasetError(f"{source}: cannot be unpacked ({error}). Replace it with an intact copy.") from None
    partial.replace(target)


def check_idx_header(path: Path, ndim: int, expected: int | None) -> int:
    """Validate an IDX file's header against its size; return the number of items. Raise DatasetError."""
    def fail(problem: str) -> DatasetError:
        return DatasetError(f"{path}: {problem}. Fix: {FIX}.")

    if not path.is_file():
        raise fail("file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4 + 4 * ndim)
    if header[:2] == b"\x1f\x8b":
        raise fail("is still gzip-compressed (expected the unpacked IDX file)")
    if header[:1] in (b"<", b"{"):
        raise fail("is a text/HTML page, not IDX data (a failed download?)")
    if len(header) < 4 + 4 * ndim:
        raise fail(f"is truncated: {size} bytes, too short for an IDX header")
    magic = int.from_bytes(header[:4], "big")
    if magic != 0x0800 + ndim:
        raise fail(f"wrong magic number 0x{magic:08x}, expected 0x{0x0800 + ndim:08x} "
                   f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
    dims = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
        raise fail(f"images are {dims[1]}x{dims[2]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    count = dims[0]
    needed = 4 + 4 * ndim + count * (IMAGE_SIZE * IMAGE_SIZE if ndim == 3 else 1)
    if size < needed:
        raise fail(f"is truncated: header announces {count} items ({needed} bytes) but the file has {size} bytes")
    if size > needed:
        raise fail(f"has {size - needed} unexpected bytes after the {count} items its header announces")
    if expected is not None and count != expected:
        raise fail(f"holds {count} items, expected {expected} for Fashion-MNIST")
    return count


def read_split(images_path: Path, labels_path: Path, expected: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and parse one split (torchvision's IDX reader); return uint8 images (N, 28, 28), int64 labels."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    n_images = check_idx_header(images_path, 3, expected)
    n_labels = check_idx_header(labels_path, 1, expected)
    if n_images != n_labels:
        raise DatasetError(f"{images_path} holds {n_images} images but {labels_path} holds {n_labels} labels "
                           f"(files from different sets?). Fix: {FIX}.")
    images, labels = read_image_file(str(images_path)), read_label_file(str(labels_path))
    bad = (labels < 0) | (labels >= len(CLASS_NAMES))
    if bad.any():
        index = int(bad.nonzero()[0])
        raise DatasetError(f"{labels_path}: label {int(labels[index])} at index {index} is outside 0-9. "
                           f"Fix: {FIX}.")
    return images, labels


def first_of_distinct_classes(labels: torch.Tensor, count: int) -> list[int]:
    """Indices of the first `count` samples whose classes all differ, in dataset order."""
    indices: list[int] = []
    for index, label in enumerate(labels.tolist()):
        if label not in {int(labels[i]) for i in indices}:
            indices.append(index)
        if len(indices) == count:
            break
    return indices


def main(argv: list[str] | None = None) -> int:
    """CLI: prepare and validate the data, print one OK line (exit 0) or the problem (exit 1)."""
    parser = argparse.ArgumentParser(description="Prepare and validate Fashion-MNIST.")
    parser.add_argument("--root", default="data", help="data folder (default: data)")
    parser.add_argument("--no-download", action="store_true", help="never try torchvision's download")
    args = parser.parse_args(argv)
    try:
        data = load_fashion_mnist(args.root, download=not args.no_download)
    except DatasetError as error:
        print(f"Fashion-MNIST NOT OK: {error}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST OK: {len(data.train_labels)} train, {len(data.test_labels)} test, "
          f"{len(CLASS_NAMES)} classes (source: {data.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
