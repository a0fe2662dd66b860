"""What a run sees: the validation images held out from the training images, and seeded minibatches.

Images stay uint8 (a process holds the data once, one byte per pixel) and become float32 in [0, 1] one
minibatch at a time, exactly as torchvision's ToTensor() scales them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from .data import FashionMNISTTensors

SPLIT_SEED = 20260101  # the validation images are the same in every run, profile and machine


@dataclass(frozen=True)
class Splits:
    """`train` (learned from), `validation` (every choice), `test` (reports only); images uint8.

    Train accuracy is measured on the first `train_eval` training images (a fixed sample). `train_index` and
    `validation_index` are the images' places in the published training file."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    validation_images: torch.Tensor
    validation_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_eval: int
    train_index: torch.Tensor
    validation_index: torch.Tensor

    @property
    def sizes(self) -> dict[str, int]:
        """Image counts per split (the keys a Profile's data_sizes uses)."""
        return {"train": len(self.train_labels), "validation": len(self.validation_labels),
                "test": len(self.test_labels), "train_eval": self.train_eval}

    def to(self, device: torch.device) -> Splits:
        """The same splits on `device` (moved once, before training)."""
        moved = [getattr(self, name).to(device) for name in ("train_images", "train_labels", "validation_images",
                                                             "validation_labels", "test_images", "test_labels")]
        return Splits(*moved, self.train_eval, self.train_index, self.validation_index)

    def without_hold_out(self) -> Splits:
        """The quickstart's data: the validation images trained on as well, every training image in the order of
        the published file, and no validation set."""
        order = torch.cat([self.validation_index, self.train_index]).argsort()
        images = torch.cat([self.validation_images, self.train_images])[order]
        labels = torch.cat([self.validation_labels, self.train_labels])[order]
        return Splits(images, labels, images[:0], labels[:0], self.test_images, self.test_labels, self.train_eval,
                      torch.cat([self.validation_index, self.train_index])[order], self.validation_index[:0])


def make_splits(data: FashionMNISTTensors, train: int, validation: int, test: int, train_eval: int,
          seed: int = SPLIT_SEED) -> Splits:
    """Hold out `validation` training images (a fixed, seeded draw), keep `train` of the rest and the first
    `test` test images: copies, so the splits hold each image once and `data` can be let go."""
    if validation + train > len(data.train_labels) or test > len(data.test_labels) or train_eval > train:
        raise ValueError(f"split sizes train={train}, validation={validation}, test={test}, train_eval={train_eval} "
                         f"do not fit {len(data.train_labels)} training and {len(data.test_labels)} test images")
    order = split_order(len(data.train_labels), seed)
    held_out, kept = order[:validation], order[validation:validation + train]
    return Splits(data.train_images[kept], data.train_labels[kept], data.train_images[held_out],
                  data.train_labels[held_out], data.test_images[:test].clone(), data.test_labels[:test].clone(),
                  train_eval, kept, held_out)


def split_order(n: int, seed: int = SPLIT_SEED) -> torch.Tensor:
    """The fixed shuffled order of the `n` training images: validation first, then the images trained on."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], as ToTensor() does."""
    return images.float().div_(255)


def count_batches(images: int, batch_size: int) -> int:
    """Minibatches in one pass over `images` images (the last may be smaller)."""
    return math.ceil(images / batch_size)


def minibatches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator,
                flip: bool = False, shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) minibatches covering every sample once, in a new random order each epoch (or, with
    `shuffle=False`, in their stored order); the last may be smaller.

    The order (and, with `flip`, which images are mirrored left-right) is drawn once per epoch from the CPU
    `generator`: the same on every device, and one copy to a GPU per epoch instead of one per step.
    """
    order = (torch.randperm(len(labels), generator=generator) if shuffle else torch.arange(len(labels))).to(labels.device)
    mirrored = (torch.rand(len(labels), generator=generator) < 0.5).to(images.device) if flip else None
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = to_float(images[index])
        if mirrored is not None:
            batch = torch.where(mirrored[start:start + batch_size].view(-1, 1, 1, 1), batch.flip(-1), batch)
        yield batch, labels[index]
