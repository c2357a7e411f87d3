"""tune's data: the shipped datasets, the user's .npz and .csv files, split as experiment splits them."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import UsageError
from advisor.experiment.datasets import load_split
from advisor.tune.data import load_data


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _blobs(n=120, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, features)) + y[:, None]
    return x, y


def test_a_shipped_dataset_is_split_exactly_as_experiment_splits_it():
    split, ref = load_data(dataset="wine", file=None, target=None, arch=None)
    same = load_split("wine", "mlp")
    assert np.array_equal(split.x_test, same.x_test) and np.array_equal(split.y_train, same.y_train)
    assert ref.dataset == "wine" and ref.sha256 is None


def test_npz_tables_train_an_mlp_with_a_stratified_60_20_20_split(tmp_path):
    x, y = _blobs()
    split, ref = load_data(dataset=None, file=_npz(tmp_path, X=x, y=y), target=None, arch=None)
    assert split.arch == "mlp" and split.input_shape == (5,)
    assert split.sizes() == {"train": 72, "val": 24, "test": 24, "train_full": 72}
    assert np.bincount(split.y_test).tolist() == [8, 8, 8]
    assert ref.sha256 is not None and len(ref.sha256) == 64


def test_npz_images_train_a_cnn_on_one_channel(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8, 8))
    y = np.arange(60) % 2
    split, _ = load_data(dataset=None, file=_npz(tmp_path, X=x, y=y), target=None, arch=None)
    assert split.arch == "cnn" and split.input_shape == (1, 8, 8)


def test_string_labels_become_class_indices(tmp_path):
    x, y = _blobs(classes=2)
    names = np.array(["cat", "dog"])[y]
    split, _ = load_data(dataset=None, file=_npz(tmp_path, X=x, y=names), target=None, arch=None)
    assert split.n_classes == 2 and set(np.unique(split.y_train)) == {0, 1}


def test_csv_with_a_target_column(tmp_path):
    x, y = _blobs(n=60, features=3, classes=2)
    lines = ["a,b,label,c"] + [f"{r[0]},{r[1]},{'yes' if t else 'no'},{r[2]}" for r, t in zip(x, y, strict=True)]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    split, ref = load_data(dataset=None, file=path, target="label", arch=None)
    assert split.input_shape == (3,) and split.n_classes == 2
    assert ref.target == "label"


def test_the_same_file_gives_the_same_split(tmp_path):
    x, y = _blobs()
    path = _npz(tmp_path, X=x, y=y)
    a, _ = load_data(dataset=None, file=path, target=None, arch=None)
    b, _ = load_data(dataset=None, file=path, target=None, arch=None)
    assert np.array_equal(a.x_val, b.x_val)


def _csv(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "target", "message"),
    [
        (lambda p: _npz(p, A=np.zeros((4, 2))), None, "holds arrays A; tune needs arrays named X and y"),
        (lambda p: _npz(p, X=np.zeros((10, 2)), y=np.zeros(9)), None, "y has shape (9,) for 10 examples"),
        (lambda p: _npz(p, X=np.zeros(10), y=np.zeros(10)), None, "X has shape (10,)"),
        (lambda p: _npz(p, X=np.full((10, 2), np.nan), y=np.arange(10) % 2), None, "missing or infinite values"),
        (lambda p: _npz(p, X=np.zeros((10, 2)), y=np.linspace(0, 1, 10)), None, "look like regression targets"),
        (lambda p: _npz(p, X=np.zeros((10, 2)), y=np.zeros(10)), None, "has a single class"),
        (lambda p: _npz(p, X=np.zeros((10, 2)), y=np.arange(10) % 2), "label", "--target is for CSV files"),
        (lambda p: _csv(p, "a,b\n1,0\n2,1\n"), None, "say which column holds the labels"),
        (lambda p: _csv(p, "a,b\n1,0\n2,1\n"), "lable", "has no column 'lable'"),
        (lambda p: _csv(p, "a,label\n1,0\n,1\n"), "label", "line 3, column 'a' is empty"),
        (lambda p: _csv(p, "a,label\n1,0\nred,1\n"), "label", "line 3, column 'a' holds 'red', not a number"),
        (lambda p: _csv(p, "a,label\n1,0\n2,1,3\n"), "label", "line 3 has 3 fields"),
        (lambda p: _csv(p, "a,label\n"), "label", "has no data rows"),
        (lambda p: p / "missing.npz", None, "does not exist"),
        (lambda p: _csv(p, "x").with_suffix(".txt"), None, "unknown file type '.txt'"),
    ],
)
def test_bad_data_files_are_usage_errors_naming_the_problem(tmp_path, make, target, message):
    path = make(tmp_path)
    with pytest.raises(UsageError) as err:
        load_data(dataset=None, file=path, target=target, arch=None)
    assert message in err.value.message


def test_a_class_too_small_to_stratify_is_a_usage_error(tmp_path):
    x = np.zeros((20, 2))
    y = np.array([0] * 19 + [1])
    with pytest.raises(UsageError, match="cannot split it stratified"):
        load_data(dataset=None, file=_npz(tmp_path, X=x, y=y), target=None, arch=None)


def test_a_cnn_on_tabular_data_is_refused(tmp_path):
    x, y = _blobs()
    with pytest.raises(UsageError, match="a CNN needs images"):
        load_data(dataset=None, file=_npz(tmp_path, X=x, y=y), target=None, arch="cnn")


def test_images_too_small_for_two_poolings_are_refused(tmp_path):
    x = np.zeros((40, 3, 3))
    y = np.arange(40) % 2
    with pytest.raises(UsageError, match="images are 3x3"):
        load_data(dataset=None, file=_npz(tmp_path, X=x, y=y), target=None, arch=None)


def test_dataset_and_data_are_exclusive(tmp_path):
    with pytest.raises(UsageError, match="either --dataset or --data"):
        load_data(dataset="wine", file=tmp_path / "d.npz", target=None, arch=None)
