"""Small offline datasets for the built-in problems.

``digits``: the 1797 8x8 handwritten digits of the UCI data set, as scikit-learn ships them
(``sklearn.datasets.load_digits``), pixel values scaled to [0, 1]. lossview ships the same
arrays in ``lossview/resources/digits.npz`` (45 kB; licence in DIGITS-NOTICE.txt), so the
built-in problems and the demo run need no extra package.

``synthetic``: a stand-in of the same shape: 1797 8x8 "images" in 10 classes,
each class a smooth random prototype (a sum of three Gaussian blobs on the 8x8 grid) plus
pixel noise and a random brightness, clipped to [0, 1]. It is as small and about as hard
(a linear model reaches roughly 90 % train accuracy), so every problem still shows its
phenomenon; the numbers differ from the digits.
"""

from __future__ import annotations

import numpy as np
import torch

from lossview.core.errors import LossviewError

DATA_SOURCES = ("auto", "digits", "synthetic")
N_SAMPLES = 1797
N_CLASSES = 10


def _digits_file():
    from importlib.resources import files

    return files("lossview.resources") / "digits.npz"


def digits_available() -> bool:
    """The shipped digits arrays are there (they are, in any install of lossview)."""
    return _digits_file().is_file()


def resolve_source(source: str) -> str:
    """``"auto"`` becomes ``"digits"`` (shipped with lossview), else ``"synthetic"``."""
    if source not in DATA_SOURCES:
        raise LossviewError(f"unknown data source {source!r} (choose from {', '.join(DATA_SOURCES)})")
    if source == "auto":
        return "digits" if digits_available() else "synthetic"
    return source


def load_images(source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 8, 8] float32 in [0, 1], labels [N] int64)`` of a resolved source."""
    if source == "digits":
        if not digits_available():
            raise LossviewError("this run uses the digits data, which this install of lossview "
                                "lacks (lossview/resources/digits.npz); reinstall lossview")
        with _digits_file().open("rb") as fh, np.load(fh) as z:
            images, target = z["images"], z["target"]
        return (images / 16.0).astype(np.float32), target.astype(np.int64)
    if source == "synthetic":
        return synthetic_images()
    raise LossviewError(f"unknown data source {source!r}")


def synthetic_images(n: int = N_SAMPLES, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """The documented fallback dataset (fixed seed: the same on every machine)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float64)
    protos = np.zeros((N_CLASSES, 8, 8))
    for c in range(N_CLASSES):
        for _ in range(3):
            cy, cx = rng.uniform(0.5, 6.5, size=2)
            width = rng.uniform(1.0, 2.2)
            protos[c] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        protos[c] /= protos[c].max()
    labels = np.arange(n) % N_CLASSES
    rng.shuffle(labels)
    bright = rng.uniform(0.6, 1.0, size=(n, 1, 1))
    images = protos[labels] * bright + rng.normal(0.0, 0.25, size=(n, 8, 8))
    return np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


def split(images: np.ndarray, labels: np.ndarray, seed: int, val_fraction: float = 0.2
          ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Seeded train/validation split as tensors (images keep their [N, 8, 8] shape)."""
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(labels), generator=g)
    n_val = round(val_fraction * len(labels))
    x = torch.from_numpy(images)[order]
    y = torch.from_numpy(labels)[order]
    return (x[n_val:].contiguous(), y[n_val:].contiguous()), (x[:n_val].contiguous(), y[:n_val].contiguous())
