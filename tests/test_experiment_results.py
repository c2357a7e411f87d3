"""Ranking, the within-noise rule, and the table, JSON and CSV made from results."""

from __future__ import annotations

import math

import pytest

from advisor.errors import OutputError
from advisor.experiment.report import (
    COLUMNS,
    check_out_dir,
    default_out_dir,
    epochs_csv,
    ranking_rows,
    text_table,
)
from advisor.experiment.results import (
    EpochRecord,
    ExperimentConfig,
    ExperimentResult,
    RunResult,
    best_epoch,
    paired_test,
    rank,
    shared_test_set_noise,
)


def _run(variant: str, seed: int, test_acc: float, val_losses=(0.5, 0.4, 0.45), test_loss: float = 0.3) -> RunResult:
    epochs = [
        EpochRecord(
            epoch=i + 1,
            fit_loss=0.5,
            train_loss=0.1,
            train_acc=1.0,
            val_loss=v,
            val_acc=0.9,
            test_loss=test_loss,
            test_acc=test_acc,
        )
        for i, v in enumerate(val_losses)
    ]
    return RunResult(variant=variant, seed=seed, epochs=epochs, best_epoch=best_epoch(val_losses), seconds=0.0)


def _result(runs: list[RunResult], order: list[str], n_test: int = 360) -> ExperimentResult:
    cfg = ExperimentConfig(
        dataset="digits",
        arch="cnn",
        variants=order,
        seeds=sorted({r.seed for r in runs}),
        epochs=3,
        batch_size=64,
        lr=0.003,
        train_fraction=1.0,
    )
    return ExperimentResult(
        tool_version="0",
        config=cfg,
        device="cpu",
        threads=1,
        sizes={"train": 1077, "val": 360, "test": n_test, "train_full": 1077},
        n_classes=10,
        input_shape=[1, 8, 8],
        complete=True,
        runs_expected=len(runs),
        variants=[],
        ranking=rank(runs, order, n_test),
        runs=runs,
    )


def test_best_epoch_is_the_lowest_validation_loss_one_based():
    assert best_epoch([0.9, 0.3, 0.5]) == 2


def test_best_epoch_takes_the_earliest_on_ties():
    assert best_epoch([0.9, 0.3, 0.3]) == 2


def test_ranking_is_by_mean_test_accuracy():
    runs = [_run("a", s, 0.90) for s in range(3)] + [_run("b", s, 0.95) for s in range(3)]
    assert [s.name for s in rank(runs, ["a", "b"], 360)] == ["b", "a"]


def test_equal_accuracy_ranks_lower_test_loss_first():
    runs = [_run("a", 0, 0.9, test_loss=0.5), _run("b", 0, 0.9, test_loss=0.2)]
    assert [s.name for s in rank(runs, ["a", "b"], 360)] == ["b", "a"]


def test_summary_has_mean_std_gap_and_best_epoch():
    runs = [_run("a", 0, 0.90), _run("a", 1, 0.94)]
    (s,) = rank(runs, ["a"], 360)
    assert s.test_acc_mean == pytest.approx(0.92)
    assert s.test_acc_std == pytest.approx(math.sqrt(2 * 0.02**2))
    assert s.gap_mean == pytest.approx(1.0 - 0.92)
    assert s.best_epochs == [2, 2]


def test_one_seed_has_no_standard_deviation():
    (s,) = rank([_run("a", 0, 0.9)], ["a"], 360)
    assert s.test_acc_std is None and s.test_loss_std is None


def test_small_difference_with_a_small_test_set_is_within_noise():
    runs = [_run("a", s, 0.97 + 0.001 * s) for s in range(3)] + [_run("b", s, 0.96 + 0.001 * s) for s in range(3)]
    ranking = rank(runs, ["a", "b"], n_test=360)
    assert [s.verdict for s in ranking] == ["best", "within-noise"]


def test_large_difference_is_marked_worse():
    runs = [_run("a", s, 0.97 + 0.002 * s) for s in range(3)] + [_run("b", s, 0.85 + 0.002 * s) for s in range(3)]
    assert rank(runs, ["a", "b"], n_test=360)[1].verdict == "worse"


def test_test_set_noise_is_twice_the_standard_error_of_the_two_accuracies():
    assert shared_test_set_noise(0.9, 0.8, 100) == pytest.approx(2 * math.sqrt(0.9 * 0.1 / 100 + 0.8 * 0.2 / 100))


def test_paired_test_is_scipys_ttest_rel_over_the_shared_seeds():
    from scipy import stats

    a = {0: 0.91, 1: 0.95, 2: 0.90, 3: 0.97}
    b = {0: 0.90, 1: 0.92, 2: 0.90, 5: 0.50}  # seed 3 and 5 are not shared
    got = paired_test(a, b)
    want = stats.ttest_rel([0.91, 0.95, 0.90], [0.90, 0.92, 0.90])
    assert got.n == 3
    assert got.p_value == pytest.approx(want.pvalue)
    assert got.mean_diff == pytest.approx((0.01 + 0.03 + 0.0) / 3)
    assert got.half_width == pytest.approx(stats.t.ppf(0.975, 2) * stats.tstd([0.01, 0.03, 0.0]) / math.sqrt(3))


def test_paired_test_with_one_shared_seed_has_no_p_value():
    assert paired_test({0: 0.9}, {0: 0.8}).p_value is None


def test_identical_runs_are_not_different():
    assert paired_test({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8}).p_value == 1.0


def test_a_consistent_paired_difference_is_worse_even_when_seeds_spread_widely():
    """Unpaired standard errors (the seed spread of each variant) would call this noise; the runs are paired."""
    accs = [0.70, 0.85, 0.99]
    runs = [_run("a", s, acc) for s, acc in enumerate(accs)] + [_run("b", s, acc - 0.05) for s, acc in enumerate(accs)]
    ranking = rank(runs, ["a", "b"], n_test=5000)
    assert ranking[1].verdict == "worse"
    assert ranking[1].p_value == 0.0


def test_a_difference_that_the_seeds_do_not_agree_on_is_within_noise():
    runs = [_run("a", s, acc) for s, acc in enumerate([0.95, 0.90, 0.97])]
    runs += [_run("b", s, acc) for s, acc in enumerate([0.90, 0.93, 0.92])]
    _, other = rank(runs, ["a", "b"], n_test=5000)
    assert other.verdict == "within-noise"
    assert other.p_value is not None and other.p_value >= 0.05


def test_one_seed_uses_the_test_set_term_only():
    runs = [_run("a", 0, 0.97), _run("b", 0, 0.96)]
    other = rank(runs, ["a", "b"], n_test=360)[1]
    assert other.p_value is None
    assert other.verdict == "within-noise"
    assert other.noise == pytest.approx(shared_test_set_noise(0.96, 0.97, 360))


def test_table_rows_show_mean_and_sd_in_percent_and_the_verdict():
    runs = [_run("a", s, 0.97) for s in range(2)] + [_run("b", s, 0.50) for s in range(2)]
    rows = ranking_rows(_result(runs, ["a", "b"]))
    assert rows[0][:3] == ["1", "a", "97.0 ± 0.0"]
    assert rows[0][-1] == "best"
    assert rows[1][-1] == "−47.0 pp"


def test_text_table_aligns_columns_under_the_header():
    text = text_table(["x", "long header"], [["1", "a"], ["22", "b"]])
    lines = text.splitlines()
    assert lines[0].index("long header") == lines[2].index("a") == lines[3].index("b")


def test_csv_has_one_row_per_variant_seed_and_epoch():
    runs = [_run("a", 0, 0.9), _run("b", 0, 0.8)]
    lines = epochs_csv(_result(runs, ["a", "b"])).splitlines()
    assert lines[0].startswith("variant,seed,epoch,")
    assert len(lines) == 1 + 2 * 3
    assert lines[1].startswith("a,0,1,")


def test_columns_name_the_issue_metrics():
    assert {"test acc %", "test loss", "train-test gap", "best val epoch"} <= set(COLUMNS)


def test_an_existing_folder_with_files_is_refused_without_force(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="already exists"):
        check_out_dir(tmp_path, force=False)
    check_out_dir(tmp_path, force=True)


def test_an_empty_existing_folder_is_fine(tmp_path):
    check_out_dir(tmp_path, force=False)


def test_a_file_as_output_folder_is_refused_even_with_force(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_out_dir(f, force=True)


def test_default_out_dir_is_numbered_when_taken(tmp_path):
    assert default_out_dir("digits", "cnn", tmp_path) == tmp_path / "digits-cnn"
    (tmp_path / "digits-cnn").mkdir()
    (tmp_path / "digits-cnn" / "results.json").write_text("{}")
    assert default_out_dir("digits", "cnn", tmp_path) == tmp_path / "digits-cnn-2"


@pytest.mark.parametrize(("n_classes", "floor"), [(10, 10.0), (3, 30.0), (2, 50.0)])
def test_the_accuracy_axis_starts_at_the_chance_level(n_classes, floor):
    from advisor.experiment.figure import accuracy_axis

    runs = [_run("a", s, 0.97) for s in range(2)] + [_run("b", s, 0.96) for s in range(2)]
    result = _result(runs, ["a", "b"]).model_copy(update={"n_classes": n_classes})
    assert accuracy_axis(result) == (floor, 100.0)
