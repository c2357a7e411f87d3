"""Code generation: `generate` (a runnable PyTorch file with the plan's dropout) and `smoke` (run its test)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from advisor.cli.advise_cmds import spec_from_flags, with_spec_flags
from advisor.cli.common import Format, emit_json, emit_text, guarded
from advisor.errors import EXIT_FINDINGS, UsageError


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
    app.command("smoke")(smoke_cmd)


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@with_spec_flags
@guarded
def generate_cmd(
    flags: dict[str, Any],
    output: str = typer.Option(
        "model.py", "--output", "-o", metavar="FILE", help="File to write; '-' writes the code to standard output."
    ),
    plan_file: Path | None = typer.Option(
        None,
        "--plan",
        metavar="FILE",
        help="Generate from a plan saved with 'recommend --format json' instead of flags.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists and differs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be written; write nothing."),
    diff: bool = typer.Option(False, "--diff", help="Show a unified diff against the existing file; write nothing."),
    mc_dropout: bool | None = typer.Option(
        None,
        "--mc-dropout/--no-mc-dropout",
        help="Add mc_predict() for Monte Carlo dropout (default: on when --uncertainty is given).",
    ),
    mc_samples: int = typer.Option(
        30, "--mc-samples", min=2, max=10_000, help="mc_predict's default number of samples."
    ),
) -> None:
    """Write a runnable PyTorch model with dropout where the plan puts it, and a smoke test.

    Takes the same flags and --answers FILE as `recommend`, or a saved plan with --plan. The file
    never overwrites an existing one without --force; run it with `python FILE` or `dropout-advisor smoke FILE`.

    \b
    Examples:
      dropout-advisor generate --arch cnn --layers 3 -o model.py
      dropout-advisor generate --arch transformer --transformer decoder -o -
      dropout-advisor generate --arch mlp -o model.py --diff
      dropout-advisor generate --plan plan.json -o model.py --force
    """
    from advisor.generate import generate, load_plan

    to_stdout = output == "-"
    if to_stdout and (dry_run or diff):
        raise UsageError("--dry-run and --diff compare against a file", hint="give -o FILE, not -o -")
    if dry_run and diff:
        raise UsageError("choose --dry-run or --diff, not both", hint="--diff also writes nothing")
    out_name = None if to_stdout else output

    if plan_file is not None:
        given = sorted(k for k, v in flags.items() if v is not None)
        if given:
            flag = "--answers" if given == ["answers"] else "--" + given[0].replace("_", "-")
            raise UsageError(
                f"--plan already holds the whole plan; {flag} cannot be combined with it",
                hint="leave out the spec flags and --answers, or leave out --plan",
            )
        plan = load_plan(plan_file)
        spec = None
        parts = ["dropout-advisor", "generate", "--plan", str(plan_file)]
        if mc_dropout:
            parts.append("--mc-dropout")
        if out_name:
            parts += ["-o", out_name]
        command: str | None = shlex.join(parts)
    else:
        from advisor.recommend import recommend

        spec, base_spec = spec_from_flags(flags, "generate")  # --base NAME fills the spec from its recipe
        plan = recommend(spec)
        command = None

    result = generate(
        plan,
        spec,
        mc_dropout=mc_dropout,
        mc_samples=mc_samples,
        output=out_name,
        command=command,
        base_spec=base_spec if plan_file is None else None,
    )
    what = f"{result.title}, {result.sites} dropout site{'s' if result.sites != 1 else ''}"
    for line in result.moved:
        _note(f"note: {line}")
    if to_stdout:
        emit_text(result.code)
        return

    path = Path(output)
    old = _read_existing(path)
    if diff:
        _show_diff(path, old, result.code)
        return
    if dry_run:
        lines = result.code.count("\n")
        if old is None:
            emit_text(f"would create {path}: {what}, {lines} lines")
        elif old == result.code:
            emit_text(f"identical: {path} is already this code; nothing would be written")
        elif force:
            emit_text(f"would replace {path} (--force): {what}, {lines} lines")
        else:
            emit_text(f"would not write {path}: it exists and differs (pass --force to replace it, --diff to compare)")
        return

    from advisor.fileio import WriteResult, write_text_atomic

    outcome = write_text_atomic(path, result.code, force=force)
    if outcome.status is WriteResult.IDENTICAL:
        _note(f"identical: {path} already holds this code; nothing written")
        return
    _note(f"{outcome.describe()}: {what}")
    _note(f"run its smoke test: python {shlex.quote(str(path))}   (or: dropout-advisor smoke {shlex.quote(str(path))})")
    _note(f"audit its dropout: {_audit_command(path, result.audit_command)}")


def _audit_command(path: Path, command: str) -> str:
    """The file's audit command with the path as the user named it (the file writes its bare name)."""
    name = shlex.quote(path.name) + ":build_model"
    return command.replace(name, shlex.quote(str(path)) + ":build_model", 1)


def _read_existing(path: Path) -> str | None:
    """The file's text, None when there is none; only a regular file is read (see advisor.fileio)."""
    from advisor.fileio import read_existing

    data = read_existing(path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _show_diff(path: Path, old: str | None, new: str) -> None:
    import difflib

    if old == new:
        _note(f"identical: {path} already holds this code")
        return
    before = "/dev/null" if old is None else f"{path} (on disk)"
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=before,
        tofile=f"{path} (generated)",
    )
    sys.stdout.writelines(lines)
    sys.stdout.flush()


@guarded
def smoke_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="A model file written by 'generate'."),
    device: str = typer.Option(
        "auto",
        "--device",
        metavar="[auto|cpu|cuda|mps|xpu]",
        help="auto, cpu, cuda, mps or xpu (auto: torch.accelerator, then CUDA, MPS, XPU, CPU).",
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        min=1,
        max=100_000,
        help="Train at most this many steps (default: the file's SMOKE_STEPS).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Random seed."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text or json."),
) -> None:
    """Run a generated model's smoke test: a few training steps on one synthetic batch, with its checks.

    Exit codes: 0 passed; 1 a check failed (the loss did not halve, eval mode was not deterministic, ...);
    2 the file does not import or the device is not available.

    \b
    Examples:
      dropout-advisor smoke model.py
      dropout-advisor smoke model.py --device cpu --steps 30 --format json
    """
    from advisor.deps import require_torch
    from advisor.smoke import run_smoke

    require_torch("smoke")
    result = run_smoke(file, device=device, steps=steps, seed=seed)
    if fmt is Format.json:
        emit_json(result.model_dump(mode="json"))
    elif result.ok:
        emit_text(
            "\n".join(
                [
                    f"{file}: smoke test passed on {result.device}",
                    f"  parameters: {result.params:,} (smoke config), {result.full_params:,} (Config())",
                    f"  dropout sites: {result.dropout_sites}",
                    f"  steps: {result.steps}, {result.step_ms:.2f} ms per step",
                    f"  eval loss on the batch: {result.start_loss:.4f} -> {result.end_loss:.4f} (at least halved)",
                    *([f"  audit its dropout: {result.audit}"] if result.audit else []),
                ]
            )
        )
    else:
        emit_text(f"{file}: smoke test FAILED on {result.device}: {result.message}")
    if not result.ok:
        raise typer.Exit(EXIT_FINDINGS)
