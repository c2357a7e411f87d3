"""Time of `generate`, as a ratio to importing its libraries; rendering must not import torch.

    python bench/bench_generate.py [--runs N]

Target (issue 4): `dropout-advisor generate ...` at most 2x `python -c "import typer, rich, pydantic, jinja2"`,
and rendering never imports torch; exits 1 when either is missed.
Each generate run writes a new file (no --force shortcut) so the whole path is timed: knowledge base, plan,
render and the atomic write. Byte-code caching is on for every timed process (into a temporary
PYTHONPYCACHEPREFIX, never the checkout), as in an installed package, even where PYTHONDONTWRITEBYTECODE is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 2.0
BASELINE = [sys.executable, "-c", "import typer, rich, pydantic, jinja2"]
GENERATE = [sys.executable, "-m", "advisor", "generate"]
CASES = {
    "generate --arch cnn": ["--arch", "cnn", "--layers", "3"],
    "generate --arch transformer": ["--arch", "transformer", "--transformer", "decoder", "--layers", "12"],
    "generate --arch rnn --mc-dropout": ["--arch", "rnn", "--mc-dropout"],
}


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str], runs: int, out: Path | None = None) -> float:
    samples = []
    for i in range(runs):
        full = cmd if out is None else [*cmd, "-o", str(out / f"model_{time.monotonic_ns()}_{i}.py")]
        start = time.perf_counter()
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _imports_torch() -> bool:
    code = (
        "import sys, tempfile, os\n"
        "from typer.testing import CliRunner\n"
        "from advisor.cli import app\n"
        "out = os.path.join(tempfile.mkdtemp(), 'm.py')\n"
        "r = CliRunner().invoke(app, ['generate', '--arch', 'resnet', '--wide', '-o', out])\n"
        "assert r.exit_code == 0, r.stderr\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ENV["PYTHONPYCACHEPREFIX"] = str(out / "pycache")
        _time(BASELINE, 1)  # warm the file and byte-code caches
        _time(GENERATE + CASES["generate --arch cnn"], 1, out)  # and the knowledge-base cache
        base = _time(BASELINE, args.runs)
        print(f"baseline  import typer, rich, pydantic, jinja2: {base * 1000:7.1f} ms (median of {args.runs})")
        worst = 0.0
        for name, flags in CASES.items():
            t = _time(GENERATE + flags, args.runs, out)
            ratio = t / base
            worst = max(worst, ratio)
            print(f"{name:36s} {t * 1000:7.1f} ms   ratio {ratio:4.2f}  (target <= {TARGET:g})")
        # For reference: the same plan without code (what generate adds is rendering and the write).
        t = _time([sys.executable, "-m", "advisor", "recommend", "--arch", "cnn", "--layers", "3"], args.runs)
        print(f"{'(reference) recommend --arch cnn':36s} {t * 1000:7.1f} ms   ratio {t / base:4.2f}")
    torch = _imports_torch()
    print(f"generate imports torch: {'YES (bug)' if torch else 'no'}")
    print(f"worst ratio {worst:.2f}")
    misses = (["generate imports torch"] if torch else []) + (
        [f"generate at {worst:.2f}x the baseline (target <= {TARGET:g})"] if worst > TARGET else []
    )
    for miss in misses:
        print(f"MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
