"""Data: IDX validation (damaged files get one clear DatasetError), preparation, CLI, minibatches."""
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import data as data_module
from helpers.data import DatasetError, FashionMNISTTensors, check_idx_header, prepare, read_split
from helpers.splits import make_splits, minibatches, to_float

ROOT = Path(__file__).resolve().parent.parent


def idx_bytes(array: torch.Tensor, magic: int | None = None) -> bytes:
    """Encode a uint8 tensor as an IDX file (big-endian header, as the dataset ships)."""
    ndim = array.dim()
    header = (magic if magic is not None else 0x0800 + ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def write_split(folder: Path, n: int, prefix: str = "train", labels: torch.Tensor | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images = torch.randint(0, 256, (n, 28, 28), generator=torch.Generator().manual_seed(n))
    labels = torch.arange(n) % 10 if labels is None else labels
    img, lab = folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"
    img.write_bytes(idx_bytes(images))
    lab.write_bytes(idx_bytes(labels))
    return img, lab


def write_dataset(raw: Path) -> None:
    """Full-size synthetic Fashion-MNIST files (60000/10000) with torchvision's names."""
    write_split(raw, 60000, "train")
    write_split(raw, 10000, "t10k")


def test_intact_split_parses_with_torchvision(tmp_path):
    img, lab = write_split(tmp_path, 30)
    images, labels = read_split(img, lab, expected=30)
    assert images.shape == (30, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [i % 10 for i in range(30)]


def damage(path: Path, how: str) -> None:
    content = path.read_bytes()
    if how == "truncated":
        path.write_bytes(content[:-100])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "header only":
        path.write_bytes(content[:6])
    elif how == "trailing bytes":
        path.write_bytes(content + b"\0" * 7)
    elif how == "wrong magic":
        path.write_bytes((0x0803 + 0x100).to_bytes(4, "big") + content[4:])
    elif how == "gzip":
        path.write_bytes(gzip.compress(content))
    elif how == "html":
        path.write_bytes(b"<html><body>404 Not Found</body></html>")
    elif how == "wrong size":
        path.write_bytes(content[:8] + (14).to_bytes(4, "big") + (56).to_bytes(4, "big") + content[16:])


@pytest.mark.parametrize("how, problem", [
    ("truncated", "truncated"), ("empty", "truncated"), ("header only", "truncated"),
    ("trailing bytes", "unexpected bytes"), ("wrong magic", "wrong magic number"),
    ("gzip", "gzip-compressed"), ("html", "HTML page"), ("wrong size", "14x56"),
])
def test_damaged_image_file_is_one_clear_error(tmp_path, how, problem):
    img, lab = write_split(tmp_path, 30)
    damage(img, how)
    with pytest.raises(DatasetError) as error:
        read_split(img, lab, expected=30)
    message = str(error.value)
    assert str(img) in message and problem in message and "python -m helpers.data" in message


def test_wrong_count_mismatch_and_bad_label(tmp_path):
    img, lab = write_split(tmp_path, 30)
    with pytest.raises(DatasetError, match="holds 30 items, expected 60000"):
        read_split(img, lab, expected=60000)
    img2, lab2 = write_split(tmp_path / "other", 20)
    with pytest.raises(DatasetError, match="30 images but .* 20 labels"):
        read_split(img, lab2, expected=None)
    labels = torch.arange(30) % 10
    labels[17] = 12
    img3, lab3 = write_split(tmp_path / "bad", 30, labels=labels)
    with pytest.raises(DatasetError, match=r"label 12 at index 17 is outside 0-9"):
        read_split(img3, lab3, expected=30)


def test_label_file_with_image_magic_is_rejected(tmp_path):
    img, lab = write_split(tmp_path, 30)
    with pytest.raises(DatasetError, match="wrong magic number"):
        check_idx_header(img, ndim=1, expected=None)  # an images file where labels belong


def test_prepare_unpacks_gz_from_fashion_mnist_dir(tmp_path, monkeypatch):
    source = tmp_path / "downloads"
    for path in write_split(source, 30, "train") + write_split(source, 10, "t10k"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(source))
    raw, found = prepare(tmp_path / "data", download=False)
    assert found == str(source) and raw == tmp_path / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data_module.FILE_NAMES)  # no .tmp left
    assert read_split(raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte", 30)[1].shape == (30,)
    assert prepare(tmp_path / "data", download=False)[1] == str(raw)  # second time: found in place


def test_fashion_mnist_dir_missing_files_names_them(tmp_path, monkeypatch):
    write_split(tmp_path / "partial", 30, "train")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "partial"))
    with pytest.raises(DatasetError, match="lacks t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"):
        prepare(tmp_path / "data", download=False)


def test_no_data_anywhere_lists_the_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data_module, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError) as error:
        prepare(tmp_path / "data", download=False)
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message and "FASHION_MNIST_DIR" in message


def run_cli(root: Path) -> subprocess.CompletedProcess:
    # a clean environment, but what Windows needs to start Python (SYSTEMROOT) is kept
    kept = {k: v for k, v in os.environ.items() if k.upper() in ("PATH", "SYSTEMROOT", "TEMP", "TMP")}
    env = {**kept, "FASHION_MNIST_DIR": str(root / "none")}
    return subprocess.run([sys.executable, "-m", "helpers.data", "--root", str(root), "--no-download"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_ok_on_intact_files_and_exit_1_without_traceback_on_damage(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_dataset(raw)
    ok = run_cli(tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"Fashion-MNIST OK: 60000 train, 10000 test, 10 classes (source: {raw})"
    damage(raw / "t10k-labels-idx1-ubyte", "truncated")
    bad = run_cli(tmp_path)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) <= 3
    assert "t10k-labels-idx1-ubyte" in bad.stderr and "truncated" in bad.stderr


def test_minibatches_cover_every_sample_once_per_epoch():
    images = torch.arange(103, dtype=torch.uint8).reshape(103, 1, 1, 1)
    labels = torch.arange(103)
    generator = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        batches = list(minibatches(images, labels, 10, generator))
        assert [len(y) for _, y in batches] == [10] * 10 + [3]
        seen = torch.cat([y for _, y in batches])
        assert sorted(seen.tolist()) == list(range(103))
        assert all(torch.equal(x.flatten(), y.float() / 255) for x, y in batches)  # paired with labels, in [0, 1]
        epochs.append(seen)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled every epoch
    again = torch.cat([y for _, y in minibatches(images, labels, 10, torch.Generator().manual_seed(0))])
    assert torch.equal(again, epochs[0])  # seeded: repeatable


def test_first_of_distinct_classes():
    from helpers.data import first_of_distinct_classes
    assert first_of_distinct_classes(torch.tensor([9, 0, 0, 3, 9, 2]), 3) == [0, 1, 3]


def test_failed_download_lists_the_ways_and_the_download_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: [Errno -3] name resolution failed")
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data_module, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DatasetError) as error:
        prepare(tmp_path / "data", download=True)
    message = str(error.value)
    assert "download failed" in message and "apt-get install dataset-fashion-mnist" in message
    assert "name resolution failed" in message and "Traceback" not in message


def tensors(train: int = 100, test: int = 30) -> FashionMNISTTensors:
    return FashionMNISTTensors(torch.arange(train, dtype=torch.uint8).reshape(train, 1, 1, 1), torch.arange(train),
                               torch.arange(test, dtype=torch.uint8).reshape(test, 1, 1, 1), torch.arange(test),
                               "synthetic")


def test_validation_is_held_out_from_training_and_fixed():
    a, b = make_splits(tensors(), train=60, validation=20, test=30, train_eval=10), make_splits(tensors(), 60, 20, 30, 10)
    train, held_out = set(a.train_labels.tolist()), set(a.validation_labels.tolist())
    assert len(train) == 60 and len(held_out) == 20 and not train & held_out
    assert torch.equal(a.validation_labels, b.validation_labels)  # the same images every time
    assert a.validation_labels.tolist() != list(range(20))       # a random draw, not the first images
    assert a.sizes == {"train": 60, "validation": 20, "test": 30, "train_eval": 10}
    quick = make_splits(tensors(), train=30, validation=20, test=10, train_eval=5)
    assert torch.equal(quick.validation_labels, a.validation_labels)  # a smaller profile holds out the same images
    with pytest.raises(ValueError, match="do not fit"):
        make_splits(tensors(), train=90, validation=20, test=30, train_eval=10)


def test_to_float_scales_as_to_tensor_does():
    from torchvision.transforms.functional import to_tensor
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert torch.equal(to_float(pixels), to_tensor(pixels.numpy().transpose(1, 2, 0)))


def test_flip_mirrors_about_half_of_each_batch_and_keeps_the_labels():
    images = torch.randint(0, 256, (1000, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(1000)
    generator = torch.Generator().manual_seed(0)
    mirrored = total = 0
    for batch, batch_labels in minibatches(images, labels, 100, generator, flip=True):
        original = to_float(images[batch_labels])
        same = (batch == original).flatten(1).all(1)
        flipped = (batch == original.flip(-1)).flatten(1).all(1)
        assert bool((same | flipped).all())  # every image is itself or its mirror image, with its own label
        mirrored += int(flipped.sum())
        total += len(batch_labels)
    assert total == 1000 and 400 < mirrored < 600
