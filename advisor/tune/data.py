"""What ``tune`` trains on: a dataset shipped with scikit-learn, or the user's own ``.npz`` or ``.csv``.

Either way the data goes through :func:`advisor.experiment.datasets.split_arrays`: split once, stratified,
60/20/20 into train / validation / test with a fixed seed, standardized with the training part's
statistics. A user file is identified by its SHA-256, so a study can tell when it is resumed on other data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from advisor.errors import UsageError
from advisor.experiment.datasets import SPLIT_SEED, DatasetInfo, Split, check_arch, dataset_info

if TYPE_CHECKING:
    import numpy as np

MIN_IMAGE_SIDE = 4  # experiment's CNN pools 2x2 twice
MAX_CLASSES = 1000


class DataRef(BaseModel):
    """Which data a study trains on: a shipped dataset's name, or a user file with its checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str  # the shipped dataset's name, or the user file's name
    file: str | None = None  # the user file as given
    sha256: str | None = None
    target: str | None = None  # the label column of a CSV
    train_fraction: float = 1.0
    split_seed: int = SPLIT_SEED


def _bad(path: Path, message: str, hint: str) -> UsageError:
    return UsageError(f"{path}: {message}", hint=hint)


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"data file {path} does not exist", hint="check the path given to --data") from None
    except IsADirectoryError:
        raise UsageError(f"data file {path} is a folder", hint="give --data a .npz or .csv file") from None
    except OSError as exc:
        raise UsageError(f"cannot read data file {path}: {exc.strerror or exc}", hint="check its permissions") from None


def _labels(path: Path, raw: np.ndarray, where: str) -> np.ndarray:
    """Class labels as 0..K-1 integers; strings and integral numbers are accepted, fractions are not."""
    import numpy as np

    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise _bad(path, f"{where} has missing or infinite labels", "every example needs a class label")
        if not np.all(raw == np.round(raw)):
            raise _bad(
                path,
                f"{where} holds fractional numbers, which look like regression targets",
                "tune trains classifiers: give class labels (integers or names)",
            )
        raw = raw.astype(np.int64)
    elif raw.dtype.kind not in "iubUSO":
        raise _bad(path, f"{where} has labels of type {raw.dtype}", "give class labels as integers or names")
    classes, y = np.unique(raw, return_inverse=True)
    if len(classes) < 2:
        raise _bad(path, f"{where} has a single class", "a classifier needs at least two classes")
    if len(classes) > MAX_CLASSES:
        raise _bad(
            path,
            f"{where} has {len(classes)} distinct labels",
            "tune trains classifiers; is this a regression target or an ID column?",
        )
    return y.astype(np.int64)


def _features(path: Path, x: np.ndarray) -> np.ndarray:
    import numpy as np

    if x.dtype.kind not in "iuf" and x.dtype != np.bool_:
        raise _bad(path, f"X has type {x.dtype}, not numbers", "features must be numeric")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise _bad(path, f"X has missing or infinite values (first in example {bad})", "fill or drop them first")
    return x


def _load_npz(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    import numpy as np

    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        names = list(arrays.files)
        if "X" not in names or "y" not in names:
            raise _bad(
                path,
                f"holds arrays {', '.join(names) or '(none)'}; tune needs arrays named X and y",
                "save them with numpy.savez(path, X=features, y=labels)",
            )
        x, y_raw = arrays["X"], arrays["y"]
    except UsageError:
        raise
    except (ValueError, OSError) as exc:
        raise _bad(path, f"not a readable .npz file ({exc})", "save it with numpy.savez(path, X=..., y=...)") from None
    if x.ndim not in (2, 3) or len(x) == 0:
        raise _bad(
            path,
            f"X has shape {x.shape}",
            "X must be (examples, features) for an MLP or (examples, height, width) grey images for a CNN",
        )
    if y_raw.ndim != 1 or len(y_raw) != len(x):
        raise _bad(path, f"y has shape {y_raw.shape} for {len(x)} examples in X", "y must be one label per example")
    image = (int(x.shape[1]), int(x.shape[2])) if x.ndim == 3 else None
    x = _features(path, x).reshape(len(x), -1)
    return x, _labels(path, y_raw, "y"), image


def _load_csv(path: Path, data: bytes, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _bad(path, "is not UTF-8 text", "save the CSV as UTF-8") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise _bad(path, "has no data rows under a header", "the first row names the columns, one example per row")
    header = [h.strip() for h in rows[0]]
    if target is None:
        raise UsageError(
            f"{path} is a CSV file: say which column holds the labels",
            hint=f"add --target COLUMN (columns: {', '.join(header[:12])}{' ...' if len(header) > 12 else ''})",
        )
    if target not in header:
        import difflib

        close = difflib.get_close_matches(target, header, n=1, cutoff=0.5)
        raise _bad(
            path,
            f"has no column '{target}'" + (f"; did you mean '{close[0]}'?" if close else ""),
            f"columns: {', '.join(header[:12])}{' ...' if len(header) > 12 else ''}",
        )
    if len(header) < 2:
        raise _bad(path, "has only the label column", "add feature columns")
    t = header.index(target)
    feats, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _bad(path, f"line {line} has {len(row)} fields, the header {len(header)}", "fix that line")
        values = []
        for col, cell in enumerate(row):
            if col == t:
                continue
            try:
                value = float(cell)
            except ValueError:
                what = "is empty" if not cell.strip() else f"holds '{cell.strip()[:20]}', not a number"
                raise _bad(
                    path,
                    f"line {line}, column '{header[col]}' {what}",
                    "feature columns must be numeric with no gaps (encode categories and fill missing values)",
                ) from None
            if not math.isfinite(value):
                raise _bad(path, f"line {line}, column '{header[col]}' is not finite", "fill or drop it")
            values.append(value)
        feats.append(values)
        labels.append(row[t].strip())
    y_raw = np.array(labels)
    try:  # numeric labels are classes by value (so '2' and '2.0' agree), names by their text
        y_num = y_raw.astype(np.float64)
    except ValueError:
        y_num = None
    if any(lab == "" for lab in labels):
        raise _bad(path, f"column '{target}' has empty labels", "every example needs a class label")
    return np.array(feats, dtype=np.float64), _labels(path, y_num if y_num is not None else y_raw, f"column '{target}'")


def load_data(
    *,
    dataset: str | None,
    file: Path | None,
    target: str | None,
    arch: str | None,
    train_fraction: float = 1.0,
    seed: int = SPLIT_SEED,
) -> tuple[Split, DataRef]:
    """The split to tune on and its reference for the study's fingerprint.

    Exactly one of ``dataset`` (a shipped name) and ``file`` (``.npz`` with arrays ``X``, ``y``; or ``.csv``
    with a ``target`` column) is given. ``arch`` None picks the data's natural network (cnn for images).
    Raises :class:`UsageError` for every problem with the data or a mismatched ``arch``.
    """
    if (dataset is None) == (file is None):
        raise UsageError("give either --dataset or --data, not both", hint="--dataset digits, or --data my.npz")
    if dataset is not None:
        if target is not None:
            raise UsageError("--target is for --data FILE.csv", hint=f"'{dataset}' comes with its labels")
        info = dataset_info(dataset)
        arch_ = check_arch(info, arch or info.default_arch)
        from advisor.experiment.datasets import load_arrays

        x, y = load_arrays(info)
        ref = DataRef(dataset=info.name, train_fraction=train_fraction, split_seed=seed)
    else:
        assert file is not None
        path = Path(file)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".csv"):
            raise UsageError(
                f"--data {path}: unknown file type '{suffix or '(none)'}'", hint="give a .npz or .csv file"
            )
        raw = _read_bytes(path)
        image: tuple[int, int] | None = None
        if suffix == ".npz":
            if target is not None:
                raise UsageError("--target is for CSV files", hint="a .npz file holds its labels in the array y")
            x, y, image = _load_npz(path, raw)
        else:
            x, y = _load_csv(path, raw, target)
        info = DatasetInfo(
            name=path.name,
            title=f"{path.name}: {len(y)} examples, "
            + (f"{image[0]}x{image[1]} images" if image else f"{x.shape[1]} features"),
            modality="image" if image else "tabular",
            default_arch="cnn" if image else "mlp",
            loader="",
            image_shape=image,
        )
        arch_ = check_arch(info, arch or info.default_arch)
        if arch_ == "cnn" and image is not None and min(image) < MIN_IMAGE_SIDE:
            raise _bad(
                path,
                f"images are {image[0]}x{image[1]}",
                f"the CNN pools twice: images need {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} or more",
            )
        ref = DataRef(
            dataset=path.name,
            file=str(file),
            sha256=hashlib.sha256(raw).hexdigest(),
            target=target,
            train_fraction=train_fraction,
            split_seed=seed,
        )
    try:
        split = _split(info, arch_, x, y, train_fraction, seed)
    except ValueError as exc:  # scikit-learn: a class too small to stratify
        raise UsageError(
            f"{info.name}: cannot split it stratified 60/20/20 ({exc})",
            hint="every class needs at least 5 examples",
        ) from None
    return split, ref


def _split(info: DatasetInfo, arch: str, x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> Split:
    from advisor.experiment.datasets import split_arrays

    return split_arrays(info, check_arch(info, arch), x, y, train_fraction=fraction, seed=seed)
