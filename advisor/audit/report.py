"""The audit report: pydantic models and three pure renderers (text, JSON, SARIF 2.1.0) returning strings."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor import __version__

SCHEMA_VERSION = 1
Severity = Literal["error", "warning", "info"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/dropout-advisor/dropout-advisor"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Location(_Model):
    """A place in source code: where a module's class is defined, or where a functional call is made."""

    file: str
    line: int = Field(ge=1)
    symbol: str | None = Field(default=None, description="Class or function name at that line.")


class Site(_Model):
    """One place that drops activations, listed once however often it runs."""

    id: str = Field(description="S1, S2, ... in execution order.")
    module: str = Field(description="Module path ('' is the model itself).")
    module_class: str
    source: Literal["module", "function", "random", "graph"] = Field(
        description=(
            "A dropout module, a dropout-like torch call, a hand-written mask (torch.rand/bernoulli), or a "
            "dropout node of a frozen graph (TorchScript, torch.export)."
        )
    )
    op: str = Field(description="What drops: 'nn.Dropout', 'F.dropout', 'nn.LSTM(dropout=)' ...")
    kind: str = Field(
        description="Dropout kind, from the knowledge-base vocabulary (dropout, dropout2d, drop-path ...)."
    )
    p: float | None = Field(description="Drop probability; null when it cannot be read.")
    calls: int = Field(description="Calls in the train-mode forward.")
    eval_calls: int = Field(description="Calls in the eval-mode forward.")
    input_shape: list[int] | None = None
    before: str | None = Field(default=None, description="What produced its input (data flow, execution order).")
    after: str | None = Field(default=None, description="What consumed its output first.")
    inplace: bool = False
    location: Location | None = Field(default=None, description="Class definition of the module.")
    call_location: Location | None = Field(default=None, description="The line of a functional call.")
    rate_from: str | None = Field(
        default=None,
        description="The dropout module whose rate this call uses (a module that only holds the rate).",
    )
    registered: bool = Field(
        default=True, description="False for a module kept in a plain list or dict: model.eval() misses it."
    )


class Finding(_Model):
    rule_id: str = Field(description="Knowledge-base recommendation ID, e.g. DRP301.")
    slug: str
    severity: Severity
    title: str
    module: str = Field(description="Module path ('' is the model itself).")
    module_class: str
    site: str | None = Field(default=None, description="Site ID when the finding is about one site.")
    message: str = Field(description="What is wrong and why.")
    fix: str
    citations: list[str] = Field(default_factory=list)
    location: Location | None = None
    call_location: Location | None = None
    allowed_by: str | None = Field(default=None, description="The allow-list entry that suppressed it.")
    third_party: str | None = Field(
        default=None,
        description="The installed package (and version) whose code the fix belongs to; null for the user's code.",
    )


class InputSpec(_Model):
    shape: list[int]
    dtype: str


class Summary(_Model):
    error: int = 0
    warning: int = 0
    info: int = 0
    allowed: int = 0


class Report(_Model):
    schema_version: int = SCHEMA_VERSION
    tool: str = "dropout-advisor"
    version: str = __version__
    target: str | None = None
    model_class: str
    device: str
    inputs: list[InputSpec] = Field(default_factory=list)
    checks: dict[str, str] = Field(
        default_factory=dict,
        description="train_forward, eval_forward, eval_determinism: 'ran' or 'skipped: why'.",
    )
    notes: list[str] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list, description="Active findings, most severe first.")
    allowed: list[Finding] = Field(default_factory=list, description="Findings suppressed by an allow-list.")
    summary: Summary = Field(default_factory=Summary)

    def worst(self) -> str | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: SEVERITY_RANK[s])

    def fails(self, fail_on: str) -> bool:
        """True when an active finding is at or above ``fail_on`` (error, warning or info)."""
        threshold = SEVERITY_RANK[fail_on]
        return any(SEVERITY_RANK[f.severity] >= threshold for f in self.findings)

    def by_slug(self, slug: str) -> list[Finding]:
        return [f for f in self.findings if f.slug == slug]


# ---- text ---------------------------------------------------------------------------------------


def _mod(path: str) -> str:
    return path or "<root>"


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:g}"


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel


def _loc(loc: Location | None) -> str:
    return f"{_rel(loc.file)}:{loc.line}" if loc is not None else ""


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


_CHECK_LABELS = {
    "train_forward": "train-mode forward",
    "eval_forward": "eval-mode forward",
    "eval_determinism": "eval determinism (two eval forwards compared)",
}


def render_text(report: Report) -> str:
    """A plain-text report: the dropout sites in execution order, then the findings."""
    out: list[str] = []
    head = f"audit of {report.target or report.model_class}"
    if report.target and report.model_class not in report.target:
        head += f" ({report.model_class})"
    inputs = ", ".join(f"{i.dtype}[{', '.join(map(str, i.shape))}]" for i in report.inputs) or "-"
    out += [head, f"device: {report.device}   inputs: {inputs}", ""]
    if report.sites:
        out.append(f"Dropout sites ({len(report.sites)}, in execution order):")
        rows = [
            [
                s.id,
                _mod(s.module),
                s.op,
                s.kind,
                _p(s.p),
                f"{s.calls}/{s.eval_calls}",
                s.before or "-",
                s.after or "-",
            ]
            for s in report.sites
        ]
        out += ["  " + line for line in _table(rows, ["id", "module", "op", "kind", "p", "calls", "before", "after"])]
        out.append("  (calls: train-mode forward / eval-mode forward)")
    else:
        out.append("No dropout sites found.")
    out.append("")
    if report.findings:
        out.append(f"Findings ({len(report.findings)}):")
        for f in report.findings:
            where = _loc(f.call_location or f.location)
            out.append(f"  {f.severity:<7} {f.rule_id} {f.slug}  {_mod(f.module)}" + (f"  [{where}]" if where else ""))
            out.append(f"          {f.message}")
            out.append(f"          fix: {f.fix}")
            more = f"dropout-advisor explain {f.rule_id}"
            if f.citations:
                more += " (" + ", ".join(f.citations) + ")"
            out.append(f"          see: {more}")
    else:
        out.append("No findings.")
    if report.allowed:
        out.append("")
        out.append(f"Allowed ({len(report.allowed)}):")
        for f in report.allowed:
            out.append(f"  {f.severity:<7} {f.rule_id} {f.slug}  {_mod(f.module)}  (allowed by {f.allowed_by})")
    skipped = {k: v for k, v in report.checks.items() if v != "ran"}
    if report.notes or skipped:
        out.append("")
        out.append("Notes:")
        for k, v in skipped.items():
            out.append(f"  - {_CHECK_LABELS.get(k, k)}: {v}")
        for n in report.notes:
            out.append(f"  - {n}")
    s = report.summary
    out.append("")
    out.append(
        f"{s.error} error(s), {s.warning} warning(s), {s.info} info" + (f", {s.allowed} allowed" if s.allowed else "")
    )
    return "\n".join(out) + "\n"


# ---- JSON ---------------------------------------------------------------------------------------


def render_json(report: Report) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


# ---- SARIF 2.1.0 --------------------------------------------------------------------------------
# Reviewed against the OASIS SARIF 2.1.0 schema (errata01); the tests validate every SARIF output with it.

FINGERPRINT_KEY = "dropoutAdvisor/v2"
LOAD_FAILURE_RULE = "model-load-failure"


def information_uri() -> str:
    """The project's home page, from the installed package's metadata (one source for pyproject and SARIF)."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        for entry in metadata("dropout-advisor").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "homepage" and url.strip():
                return url.strip()
    except (PackageNotFoundError, ValueError):
        pass
    return INFO_URI


def _uri(path: str, base: Path | None) -> tuple[str, bool]:
    """A URI relative to ``base`` (with %SRCROOT%) when the file lies under it, else an absolute file URI."""
    p = Path(path).resolve()
    if base is not None:
        try:
            return p.relative_to(base.resolve()).as_posix(), True
        except ValueError:
            pass
    return p.as_uri(), False


def _physical(loc: Location, base: Path | None) -> dict[str, Any]:
    uri, relative = _uri(loc.file, base)
    artifact: dict[str, Any] = {"uri": uri}
    if relative:
        artifact["uriBaseId"] = "%SRCROOT%"
    return {"physicalLocation": {"artifactLocation": artifact, "region": {"startLine": loc.line}}}


def _source_line(loc: Location | None) -> str:
    if loc is None:
        return ""
    import linecache

    return " ".join(linecache.getline(loc.file, loc.line).split())


def fingerprints(report: Report) -> list[str]:
    """One stable fingerprint per active finding, in order (SARIF ``partialFingerprints``, ``--baseline``).

    Built from what identifies the problem, not from where it sits among the others: the rule, the module
    path, what drops (``nn.Dropout``, ``F.dropout`` ...) and, for a functional call, the text of the call's
    line. Site IDs (S1, S2 ... in execution order) and line numbers are left out, so adding a dropout site
    elsewhere, or lines above, changes no other finding's fingerprint. Identical keys are numbered.
    """
    import hashlib

    sites = {s.id: s for s in report.sites}
    seen: dict[str, int] = {}
    out = []
    for f in report.findings:
        site = sites.get(f.site) if f.site else None
        key = "\x1f".join([f.rule_id, f.slug, f.module, site.op if site else "", _source_line(f.call_location)])
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(hashlib.sha256(f"{key}\x1f{n}".encode()).hexdigest()[:32])
    return out


def read_baseline(path: Path) -> set[str]:
    """The fingerprints in a SARIF file written by ``audit --format sarif`` (for ``--baseline``).

    Raises :class:`~advisor.errors.UsageError` (exit 2) for a file that is missing, not JSON, or not a
    SARIF log from this tool.
    """
    from advisor.errors import SpecError, UsageError
    from advisor.fileio import read_user_text

    try:
        text = read_user_text(path, "baseline", "SARIF (audit --format sarif)")
    except SpecError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    hint = "give a file written by 'dropout-advisor audit ... --format sarif -o FILE'"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"baseline {path} is not JSON: {exc.msg} (line {exc.lineno})", hint=hint) from None
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list) or doc.get("version") != "2.1.0":
        raise UsageError(f"baseline {path} is not a SARIF 2.1.0 log", hint=hint)
    found: set[str] = set()
    ours = False
    for run in runs:
        driver = run.get("tool", {}).get("driver", {}) if isinstance(run, dict) else {}
        if driver.get("name") != "dropout-advisor":
            continue
        ours = True
        for result in run.get("results") or []:
            value = (result.get("partialFingerprints") or {}).get(FINGERPRINT_KEY)
            if isinstance(value, str):
                found.add(value)
    if not ours:
        raise UsageError(f"baseline {path} holds no dropout-advisor run", hint=hint)
    return found


def apply_baseline(report: Report, known: set[str], label: str) -> Report:
    """The report without the findings whose fingerprint is in ``known``: only new findings count.

    The summary (and so the exit code) counts the new findings only; a note says how many were left out.
    """
    keep = [f for f, fp in zip(report.findings, fingerprints(report), strict=True) if fp not in known]
    dropped = len(report.findings) - len(keep)
    summary = report.summary.model_copy(
        update={sev: sum(f.severity == sev for f in keep) for sev in ("error", "warning", "info")}
    )
    notes = [*report.notes, f"{dropped} finding(s) already in the baseline {label} are not reported"]
    return report.model_copy(update={"findings": keep, "summary": summary, "notes": notes})


def render_sarif(
    report: Report,
    *,
    base: Path | None = None,
    rules_meta: dict[str, dict[str, Any]] | None = None,
    baseline: bool = False,
) -> str:
    """SARIF 2.1.0: one run, one reporting descriptor per rule that fired, one result per active finding.

    Each result points at the offending line, the same one the text report shows: the line of a functional
    call, else the class definition of the module (the nearest class in the user's code), which then also
    goes into ``relatedLocations`` for a call. ``partialFingerprints`` hold :func:`fingerprints`. ``base``
    (default: the current directory) makes URIs relative, as code-scanning services expect. ``baseline``:
    the report was filtered by :func:`apply_baseline`, so every result is marked ``baselineState: new``.
    """
    base = Path.cwd() if base is None else base
    rules_meta = rules_meta or {}
    rule_index: dict[str, int] = {}
    rules: list[dict[str, Any]] = []
    for f in report.findings:
        if f.rule_id in rule_index:
            continue
        rule_index[f.rule_id] = len(rules)
        meta = rules_meta.get(f.slug, {})
        rule: dict[str, Any] = {
            "id": f.rule_id,
            "name": f.slug,
            "shortDescription": {"text": f.title},
            "fullDescription": {"text": meta.get("summary") or f.title},
            "help": {"text": f"{f.fix}\nRun 'dropout-advisor explain {f.rule_id}' for the full recommendation."},
            "defaultConfiguration": {"level": _SARIF_LEVEL[meta.get("severity", f.severity)]},
            "properties": {"tags": ["dropout", "pytorch"], "citations": f.citations},
        }
        rules.append(rule)
    results: list[dict[str, Any]] = []
    for f, fingerprint in zip(report.findings, fingerprints(report), strict=True):
        result: dict[str, Any] = {
            "ruleId": f.rule_id,
            "ruleIndex": rule_index[f.rule_id],
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message} Fix: {f.fix}"},
            "locations": [],
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint},
            "properties": {"slug": f.slug, "module": f.module, "moduleClass": f.module_class},
        }
        if baseline:
            result["baselineState"] = "new"
        primary = f.call_location or f.location
        if primary is not None:
            loc = _physical(primary, base)
            loc["logicalLocations"] = [{"fullyQualifiedName": f.module or "<root>", "kind": "module"}]
            result["locations"].append(loc)
        if f.call_location is not None and f.location is not None:
            related = _physical(f.location, base)
            related["id"] = 1
            related["message"] = {"text": f"the class of module {f.module or '<root>'}"}
            result["relatedLocations"] = [related]
        results.append(result)
    run = _run(report.version, rules, results, base)
    run["properties"] = {"target": report.target, "device": report.device, "notes": report.notes}
    return _log(run)


def _run(version: str, rules: list[dict[str, Any]], results: list[dict[str, Any]], base: Path) -> dict[str, Any]:
    return {
        "tool": {
            "driver": {
                "name": "dropout-advisor",
                "version": version,
                "semanticVersion": version,
                "informationUri": information_uri(),
                "rules": rules,
            }
        },
        "originalUriBaseIds": {"%SRCROOT%": {"uri": base.resolve().as_uri() + "/"}},
        "results": results,
    }


def _log(run: dict[str, Any]) -> str:
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


_AT = re.compile(r"\bat (?P<file>[^\s:][^:\n]*?):(?P<line>\d+)\b")


def render_sarif_failure(target: str, message: str, hint: str | None, *, base: Path | None = None) -> str:
    """SARIF 2.1.0 for an audit that could not run (the model did not import, build or run): one error
    result and a failed invocation, so that code scanning shows the failure instead of a clean run.

    The result points at the line the error names (``at FILE:LINE``), else at the target's file.
    """
    from advisor import __version__

    base = Path.cwd() if base is None else base
    text = message + (f" Hint: {hint}" if hint else "")
    location: Location | None = None
    match = _AT.search(message)
    if match and Path(match["file"]).is_file():
        location = Location(file=match["file"], line=int(match["line"]))
    else:
        where, _, _ = target.rpartition(":")
        if where.endswith(".py") and Path(where).is_file():
            location = Location(file=where, line=1)
    rule = {
        "id": LOAD_FAILURE_RULE,
        "name": LOAD_FAILURE_RULE,
        "shortDescription": {"text": "The model could not be imported, built or run, so it was not audited"},
        "fullDescription": {"text": "dropout-advisor audit stopped before checking any dropout site."},
        "help": {"text": "Run the same audit command in a terminal to see the error and its hint."},
        "defaultConfiguration": {"level": "error"},
    }
    result: dict[str, Any] = {
        "ruleId": LOAD_FAILURE_RULE,
        "ruleIndex": 0,
        "level": "error",
        "message": {"text": text},
        "locations": [_physical(location, base)] if location is not None else [],
        "partialFingerprints": {FINGERPRINT_KEY: f"{LOAD_FAILURE_RULE}:{target}"},
    }
    run = _run(__version__, [rule], [result], base)
    run["invocations"] = [
        {
            "executionSuccessful": False,
            "exitCode": 2,
            "toolExecutionNotifications": [{"level": "error", "message": {"text": text}}],
        }
    ]
    run["properties"] = {"target": target}
    return _log(run)
