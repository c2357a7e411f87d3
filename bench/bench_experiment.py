"""How long the default `dropout-advisor experiment` takes, against its 90 s budget on a 2-core CPU.

    python bench/bench_experiment.py [--repeat N]

Runs the command as a user would (a fresh process: imports, data, training, files) with every default:
all CNN variants, 3 seeds, digits. In the same run it measures a baseline, the fixed cost of the command
(one variant, one seed, one epoch), so the training share can be told apart from start-up. Prints the
times, the ratio to the budget and the ranking the run produced, and exits 1 when the run misses the
budget. The load average is printed too: on a shared machine other processes slow the run down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 90.0


def timed(args: list[str], out: Path) -> tuple[float, dict[str, object]]:
    cmd = [sys.executable, "-m", "advisor", "experiment", *args, "--out", str(out), "--format", "json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="run the default experiment this many times")
    args = parser.parse_args()

    print(f"cpus: {os.cpu_count()}  load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        base_s, _ = timed(["--variants", "none", "--seeds", "1", "--epochs", "1"], Path(tmp) / "baseline")
        times = []
        payload: dict[str, object] = {}
        for i in range(args.repeat):
            t, payload = timed([], Path(tmp) / f"default-{i}")
            times.append(t)
    config = payload["config"]
    assert isinstance(config, dict)
    median = statistics.median(times)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"baseline (fixed cost: start-up, data, files; 1 variant x 1 seed x 1 epoch): {base_s:.1f} s")
    print(
        f"default run ({len(config['variants'])} CNN variants x {len(config['seeds'])} seeds x "
        f"{config['epochs']} epochs on {config['dataset']}, batch {config['batch_size']}): "
        + ", ".join(f"{t:.1f} s" for t in times)
    )
    print(f"default run / budget: {median:.1f} s / {BUDGET_S:.0f} s = {median / BUDGET_S:.2f}  (target <= 1)")
    print(f"default run / baseline: {median / base_s:.1f}x")
    print("ranking of the last run:")
    ranking = payload["ranking"]
    assert isinstance(ranking, list)
    for s in ranking:
        sd = s["test_acc_std"]
        print(
            f"  {s['rank']}. {s['name']:<15} test acc {s['test_acc_mean'] * 100:5.1f} ± {(sd or 0) * 100:.1f} %  "
            f"loss {s['test_loss_mean']:.3f}  gap {s['gap_mean'] * 100:+.1f} pp  "
            f"best epoch {s['best_epoch_mean']:.1f}  {s['verdict']}"
        )
    if median > BUDGET_S:
        print(f"MISSED: the default run took {median:.1f} s (budget {BUDGET_S:.0f} s)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
