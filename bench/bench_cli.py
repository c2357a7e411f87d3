"""Startup time of the torch-free commands, as a ratio to importing their libraries.

    python bench/bench_cli.py [--runs N]

Targets (issues 2 and 3): `refs list`, `explain ID` and `recommend` at most 1.5x
`python -c "import typer, rich, pydantic, jinja2"`; loading and validating the knowledge base < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BASELINE = [sys.executable, "-c", "import typer, rich, pydantic, jinja2"]
COMMANDS = {
    "refs list": [sys.executable, "-m", "advisor", "refs", "list"],
    "explain DRP001": [sys.executable, "-m", "advisor", "explain", "DRP001"],
    "recommend --arch cnn": [sys.executable, "-m", "advisor", "recommend", "--arch", "cnn"],
    "ask 'before or after pooling?'": [sys.executable, "-m", "advisor", "ask", "before or after pooling?"],
    "ask '¿Dónde va el dropout...?'": [sys.executable, "-m", "advisor", "ask", "¿Dónde va el dropout en una U-Net?"],
}


def _time(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    _time(BASELINE, 1)  # warm the file cache
    base = _time(BASELINE, args.runs)
    print(f"baseline  import typer, rich, pydantic, jinja2: {base * 1000:7.1f} ms (median of {args.runs})")
    # Recent typer releases coerce every command-line parameter through pydantic TypeAdapters, which
    # imports pydantic in full: a floor that any typer command with options pays, before our own code.
    floor_cmd = [sys.executable, "-c", "import typer._adapters, rich.table"]
    try:
        floor = _time(floor_cmd, args.runs)
        print(f"floor     import typer._adapters, rich.table:    {floor * 1000:7.1f} ms   ratio {floor / base:4.2f}")
    except subprocess.CalledProcessError:
        print("floor     (this typer has no _adapters module: no pydantic-based parameter parsing)")
    worst = 0.0
    for name, cmd in COMMANDS.items():
        t = _time(cmd, args.runs)
        ratio = t / base
        worst = max(worst, ratio)
        print(f"{name:32s} {t * 1000:7.1f} ms   ratio {ratio:4.2f}  (target <= 1.5)")

    from advisor.knowledge import load

    load()  # warm
    samples = []
    for _ in range(args.runs):
        start = time.perf_counter()
        load()
        samples.append(time.perf_counter() - start)
    kb_ms = statistics.median(samples) * 1000
    print(f"load + validate the knowledge base: {kb_ms:.1f} ms (target < 50 ms)")
    print(f"worst ratio {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
