"""Loading, splitting and standardizing the experiment's datasets."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import UsageError
from advisor.experiment.datasets import dataset_info, load_split


def test_digits_split_is_60_20_20_of_all_1797_images():
    s = load_split("digits", "cnn")
    sizes = s.sizes()
    assert sizes["train"] + sizes["val"] + sizes["test"] == 1797
    assert abs(sizes["test"] - 360) <= 1 and abs(sizes["val"] - 360) <= 1


def test_cnn_inputs_are_one_channel_8x8_images():
    s = load_split("digits", "cnn")
    assert s.x_train.shape[1:] == (1, 8, 8)
    assert s.input_shape == (1, 8, 8)
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64


def test_mlp_on_digits_gets_flat_features():
    assert load_split("digits", "mlp").input_shape == (64,)


def test_split_is_stratified():
    s = load_split("wine", "mlp")
    every = np.concatenate([s.y_train, s.y_val, s.y_test])
    overall = np.bincount(every) / len(every)
    for y in (s.y_train, s.y_val, s.y_test):
        assert np.allclose(np.bincount(y, minlength=3) / len(y), overall, atol=0.05)


def test_standardization_uses_training_statistics_only():
    s = load_split("breast-cancer", "mlp")
    assert np.allclose(s.x_train.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(s.x_train.std(axis=0), 1.0, atol=1e-3)
    # Held-out parts are scaled with the training statistics, so they are not exactly centred themselves.
    assert not np.allclose(s.x_test.mean(axis=0), 0.0, atol=1e-4)


def test_images_are_standardized_with_one_mean_and_scale():
    s = load_split("digits", "cnn")
    assert abs(float(s.x_train.mean())) < 1e-4
    assert abs(float(s.x_train.std()) - 1.0) < 1e-3


def test_train_fraction_shrinks_only_the_training_part():
    full = load_split("digits", "cnn")
    small = load_split("digits", "cnn", train_fraction=0.2)
    assert len(small.y_train) == int(0.2 * len(full.y_train))
    assert small.n_train_full == len(full.y_train)
    assert np.array_equal(small.y_test, full.y_test)
    assert np.array_equal(small.y_val, full.y_val)
    assert set(np.unique(small.y_train)) == set(range(10))


def test_split_is_the_same_every_time():
    a, b = load_split("wine", "mlp", train_fraction=0.5), load_split("wine", "mlp", train_fraction=0.5)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)


def test_train_fraction_too_small_for_the_classes_is_a_usage_error():
    with pytest.raises(UsageError, match="too few for 10 classes"):
        load_split("digits", "cnn", train_fraction=0.01)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_train_fraction_outside_0_1_is_a_usage_error(fraction):
    with pytest.raises(UsageError, match="--train-fraction"):
        load_split("wine", "mlp", train_fraction=fraction)


def test_cnn_on_a_tabular_dataset_is_a_usage_error():
    with pytest.raises(UsageError, match="tabular") as info:
        load_split("wine", "cnn")
    assert "--arch mlp" in (info.value.hint or "")


def test_unknown_dataset_gets_a_close_match():
    with pytest.raises(UsageError, match="did you mean 'digits'"):
        dataset_info("digts")


def test_unknown_dataset_without_a_close_match_lists_the_choices():
    with pytest.raises(UsageError) as info:
        dataset_info("imagenet")
    assert "breast-cancer" in (info.value.hint or "")
