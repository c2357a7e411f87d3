"""``dropout-advisor audit``: find misplaced and broken dropout in an existing PyTorch model."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from advisor.cli.common import emit_text, guarded
from advisor.errors import EXIT_FINDINGS, EXIT_OK, AdvisorError


class AuditFormat(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"


class InputDtype(str, Enum):
    float = "float"
    long = "long"


class Device(str, Enum):
    auto = "auto"
    meta = "meta"
    cpu = "cpu"


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_cmd)


@guarded
def audit_cmd(
    target: str = typer.Argument(
        ..., metavar="TARGET", help="The model: path/to/file.py:NAME or package.module:NAME (a class or factory)."
    ),
    input_shape: list[str] = typer.Option(
        None,
        "--input-shape",
        "-s",
        metavar="SHAPE",
        help="Example input shape, batch first: 8,3,32,32. Repeat for several inputs.",
    ),
    input_dtype: list[InputDtype] = typer.Option(
        None, "--input-dtype", help="float, or long for token ids. One for all inputs, or one per --input-shape."
    ),
    kwargs: str | None = typer.Option(
        None, "--kwargs", metavar="JSON", help="Constructor arguments as JSON: '{\"depth\": 50}'."
    ),
    fmt: AuditFormat = typer.Option(AuditFormat.text, "--format", "-f", help="text, json or sarif (SARIF 2.1.0)."),
    fail_on: FailOn | None = typer.Option(
        None,
        "--fail-on",
        help="Exit 1 when a finding is at or above this severity (default: warning, or fail-on in pyproject.toml).",
    ),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when findings reach --fail-on."),
    allow: list[str] = typer.Option(
        None, "--allow", metavar="MODULE_GLOB:RULE", help="Allow a rule for matching modules, e.g. 'prenet.*:*'."
    ),
    device: Device = typer.Option(
        Device.auto, "--device", help="meta (no weight memory), cpu, or auto (meta for large models, CPU fallback)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        metavar="FILE",
        help="The pyproject.toml whose tool.dropout-advisor table to read (default: the nearest one).",
    ),
    include_third_party: bool = typer.Option(
        False,
        "--include-third-party",
        help="Report findings in installed packages (torchvision, timm, transformers) at full severity, not as info.",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the report to this file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
    baseline: Path | None = typer.Option(
        None,
        "--baseline",
        metavar="FILE",
        help="A SARIF report of an earlier audit: report (and fail on) only findings that are not in it.",
    ),
) -> None:
    """Audit a model's dropout: run it in train and eval mode and check every dropout site.

    Exit codes: 0 no finding at or above --fail-on; 1 findings at or above --fail-on; 2 usage errors and
    models that cannot be imported, built or run.

    \b
    Examples:
      dropout-advisor audit model.py:Net --input-shape 8,3,32,32
      dropout-advisor audit lm.py:GPT -s 2,128 --input-dtype long
      dropout-advisor audit model.py:Net -s 8,16 -f sarif -o dropout.sarif
      dropout-advisor audit model.py:Net -s 8,16 --allow 'prenet.*:*'
      dropout-advisor audit model.py:Net -s 8,16 -f sarif --baseline old.sarif
    """
    from advisor.deps import require_torch

    require_torch("audit")
    from advisor.audit import config as cfg
    from advisor.audit import load

    shapes = [load.parse_shape(s) for s in (input_shape or [])]
    dtypes = [d.value for d in (input_dtype or [InputDtype.float])]
    ctor_kwargs = load.parse_kwargs(kwargs)
    cli_allow = [cfg.parse_allow(a) for a in (allow or [])]
    where, _, _ = target.rpartition(":")
    start = Path(where) if where.endswith(".py") else Path.cwd()
    if config is not None and not config.is_file():
        from advisor.errors import UsageError

        raise UsageError(f"--config {config}: no such file", hint="give the path of a pyproject.toml")
    conf = cfg.load_config(
        config if config is not None else cfg.find_pyproject(start if start.exists() else Path.cwd())
    )
    threshold = fail_on.value if fail_on is not None else (conf.fail_on or "warning")
    to_file = output is not None and str(output) != "-"
    if output is not None and to_file:
        from advisor.fileio import check_writable

        check_writable(output, force=force)  # before the audit, not after it
    from advisor.audit import report as rep

    known = rep.read_baseline(baseline) if baseline is not None else None

    try:
        report = load.audit_target(
            target,
            shapes=shapes,
            dtypes=dtypes,
            kwargs=ctor_kwargs,
            device=device.value,
            allow=[*cli_allow, *conf.allow],
            progress=_progress,
            include_third_party=include_third_party,
        )
    except Exception as exc:
        if fmt is AuditFormat.sarif:  # code scanning shows the failure, not a clean run
            message, hint = (
                (exc.message, exc.hint)
                if isinstance(exc, AdvisorError)
                else (f"internal error: {type(exc).__name__}: {exc}", "this is a bug in dropout-advisor")
            )
            _write(rep.render_sarif_failure(target, message, hint), output if to_file else None, force)
        raise
    if known is not None:
        report = rep.apply_baseline(report, known, str(baseline))
    if fmt is AuditFormat.json:
        text = rep.render_json(report)
    elif fmt is AuditFormat.sarif:
        from advisor.audit.rules import rules_meta

        text = rep.render_sarif(report, rules_meta=rules_meta(), baseline=known is not None)
    else:
        text = rep.render_text(report)
    if fmt is not AuditFormat.text:
        for note in report.notes:
            sys.stderr.write(f"note: {note}\n")
    written = _write(text, output if to_file else None, force)
    if written is not None:
        s = report.summary
        sys.stderr.write(
            f"{output}: {written.value}{written.via} ({s.error} error(s), {s.warning} warning(s), {s.info} info)\n"
        )
    if report.fails(threshold) and not exit_zero:
        raise typer.Exit(EXIT_FINDINGS)
    raise typer.Exit(EXIT_OK)


def _write(text: str, output: Path | None, force: bool) -> Any:
    """The report to stdout, or to ``output`` through the one writer (returns what it did)."""
    if output is None:
        emit_text(text)
        return None
    from advisor.fileio import write_text_atomic

    return write_text_atomic(output, text, force=force)


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"{message}...\n")
