"""The real datasets the experiment trains on: small, shipped with scikit-learn, offline.

Each is split once, stratified, into train / validation / test with a fixed split seed, so every variant
and every training seed sees the same test set; only ``--train-fraction`` shrinks the training part (to
make overfitting visible). Inputs are standardized with statistics of the training part alone.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from advisor.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

Arch = Literal["cnn", "mlp"]
ARCHS: tuple[Arch, ...] = ("cnn", "mlp")

SPLIT_SEED = 0
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    modality: Literal["image", "tabular"]
    default_arch: Arch
    loader: str  # the sklearn.datasets function
    image_shape: tuple[int, int] | None = None


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("digits", "handwritten digits, 8x8 grey images, 10 classes", "image", "cnn", "load_digits", (8, 8)),
        DatasetInfo(
            "breast-cancer", "Wisconsin breast cancer, 30 features, 2 classes", "tabular", "mlp", "load_breast_cancer"
        ),
        DatasetInfo("wine", "wine cultivars, 13 features, 3 classes", "tabular", "mlp", "load_wine"),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The dataset called ``name``; a typo gets the closest names."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, list(DATASETS), n=2, cutoff=0.5)
    suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"unknown dataset '{name}'{suggestion}", hint="choose one of: " + ", ".join(DATASETS))


def check_arch(info: DatasetInfo, arch: str) -> Arch:
    if arch not in ARCHS:
        close = difflib.get_close_matches(arch, ARCHS, n=1, cutoff=0.5)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown --arch '{arch}'{suggestion}", hint="choose cnn or mlp")
    if arch == "cnn" and info.image_shape is None:
        images = ", ".join(d.name for d in DATASETS.values() if d.image_shape is not None)
        raise UsageError(
            f"'{info.name}' is tabular; a CNN needs images",
            hint=f"use --arch mlp with {info.name}, or a CNN on {images}",
        )
    return arch


@dataclass(frozen=True)
class Split:
    """Standardized float32 arrays; images are (N, 1, H, W) for a CNN, everything else (N, features)."""

    info: DatasetInfo
    arch: Arch
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    n_train_full: int  # the training part before --train-fraction

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "train_full": self.n_train_full,
        }


def load_arrays(info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """The shipped dataset's features (N, features) and labels (N,), as scikit-learn returns them."""
    import sklearn.datasets

    x, y = getattr(sklearn.datasets, info.loader)(return_X_y=True)
    return x, y


def load_split(name: str, arch: str, *, train_fraction: float = 1.0, seed: int = SPLIT_SEED) -> Split:
    """Load ``name``, split it stratified 60/20/20, shrink the training part, standardize on it."""
    info = dataset_info(name)
    arch_ = check_arch(info, arch)
    x, y = load_arrays(info)
    return split_arrays(info, arch_, x, y, train_fraction=train_fraction, seed=seed)


def split_arrays(
    info: DatasetInfo, arch: Arch, x: np.ndarray, y: np.ndarray, *, train_fraction: float = 1.0, seed: int = SPLIT_SEED
) -> Split:
    """Split ``x`` (N, features) or (N, H, W) and integer labels ``y`` (N,) as :func:`load_split` does.

    Shared by the shipped datasets and the user's own arrays (``dropout-advisor tune --data``); ``info``
    describes the data (its ``image_shape`` decides whether a CNN gets (N, 1, H, W) images).
    Raises :class:`UsageError` for a ``train_fraction`` outside (0, 1] or one that leaves too few examples.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    if not 0.0 < train_fraction <= 1.0:
        raise UsageError(f"--train-fraction must be in (0, 1], got {train_fraction:g}", hint="e.g. 0.2 keeps 20%")
    n_classes = len(np.unique(y))
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=VAL_FRACTION / (1.0 - TEST_FRACTION), stratify=y_rest, random_state=seed
    )
    n_full = len(y_train)
    if train_fraction < 1.0:
        keep = math.floor(train_fraction * n_full)
        if keep < 2 * n_classes:
            least = math.ceil(2 * n_classes / n_full * 100) / 100
            raise UsageError(
                f"--train-fraction {train_fraction:g} keeps {keep} of {n_full} training examples, "
                f"too few for {n_classes} classes",
                hint=f"use --train-fraction {least:g} or more with {info.name}",
            )
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=keep, stratify=y_train, random_state=seed
        )

    if info.modality == "image":
        # One mean and scale for all pixels keeps the image's spatial structure (per-pixel scaling would
        # blow up near-constant border pixels).
        mean = x_train.mean()
        scale = x_train.std() or 1.0
    else:
        mean = x_train.mean(axis=0)
        scale = x_train.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)

    def prep(a: np.ndarray) -> np.ndarray:
        out = ((a - mean) / scale).astype(np.float32)
        if arch == "cnn" and info.image_shape is not None:
            out = out.reshape(-1, 1, *info.image_shape)
        return np.ascontiguousarray(out)

    def labels(a: np.ndarray) -> np.ndarray:
        return a.astype(np.int64)

    return Split(
        info=info,
        arch=arch,
        x_train=prep(x_train),
        y_train=labels(y_train),
        x_val=prep(x_val),
        y_val=labels(y_val),
        x_test=prep(x_test),
        y_test=labels(y_test),
        n_classes=n_classes,
        n_train_full=n_full,
    )
