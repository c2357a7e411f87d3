"""Allow-lists: dropout that is on at inference on purpose (MC dropout, the Tacotron 2 prenet).

An entry is ``MODULE_GLOB:RULE``. RULE is a rule slug, its recommendation ID (DRP301) or ``*``.
MODULE_GLOB is an ``fnmatch`` pattern over module paths (``prenet``, ``decoder.prenet.*``, ``*``); it
also covers everything inside the modules it names, and ``X.*`` covers ``X`` itself. ``<root>``
names the model itself. Entries come from ``--allow`` and from the user's ``pyproject.toml``::

    [tool.dropout-advisor]
    allow = ["prenet.*:functional-dropout-ignores-eval"]
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from advisor.errors import UsageError

TABLE = "dropout-advisor"
FAIL_ON = ("error", "warning", "info")


@dataclass(frozen=True)
class AllowRule:
    glob: str
    rule: str  # slug or "*"
    source: str = "--allow"
    text: str = field(default="", compare=False)  # as the user wrote it (the rule may be an ID)

    def __str__(self) -> str:
        return self.text or f"{self.glob}:{self.rule}"

    def matches(self, module: str, slug: str) -> bool:
        if self.rule not in ("*", slug):
            return False
        glob = "" if self.glob == "<root>" else self.glob
        if glob == "*":
            return True
        parts = module.split(".") if module else []
        candidates = [".".join(parts[:i]) for i in range(len(parts), -1, -1)]
        for path in candidates:
            if fnmatchcase(path, glob):
                return True
            if glob.endswith(".*") and fnmatchcase(path, glob[:-2]):
                return True
        return False


@dataclass
class AuditConfig:
    allow: list[AllowRule] = field(default_factory=list)
    fail_on: str | None = None
    source: Path | None = None


def parse_allow(entry: str, source: str = "--allow") -> AllowRule:
    """'prenet.*:functional-dropout-ignores-eval' -> AllowRule; a bad entry is a UsageError naming it."""
    from advisor.audit.rules import SLUGS, resolve_rule

    text = entry.strip()
    glob, sep, rule = text.rpartition(":")
    if not sep or not glob or not rule:
        raise UsageError(
            f"{source}: '{entry}' is not MODULE_GLOB:RULE",
            hint="for example 'prenet.*:functional-dropout-ignores-eval' or 'mc_head:*'",
        )
    slug = resolve_rule(rule.strip())
    if slug is None:
        close = difflib.get_close_matches(rule.strip(), list(SLUGS), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else "rules: " + ", ".join(SLUGS)
        raise UsageError(f"{source}: unknown rule '{rule}' in '{entry}'", hint=hint)
    return AllowRule(glob.strip(), slug, source, text=text)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in ``start`` or a folder above it."""
    start = start.resolve()
    if start.is_file():
        start = start.parent
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None) -> AuditConfig:
    """Read ``[tool.dropout-advisor]`` from ``path``; keys other commands own are left alone."""
    if path is None:
        return AuditConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint="fix the file or run from another folder") from None
    table = data.get("tool", {}).get(TABLE)
    if table is None:
        return AuditConfig(source=path)
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.{TABLE}] must be a table", hint='e.g. allow = ["prenet.*:*"]')
    where = f"{path} [tool.{TABLE}]"
    raw = table.get("allow", [])
    if isinstance(raw, str) or not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
        raise UsageError(
            f"{where}: 'allow' must be a list of strings",
            hint='allow = ["prenet.*:functional-dropout-ignores-eval"]',
        )
    allow = [parse_allow(e, source=f"{path.name}") for e in raw]
    fail_on = table.get("fail-on", table.get("fail_on"))
    if fail_on is not None and fail_on not in FAIL_ON:
        raise UsageError(
            f"{where}: fail-on = {fail_on!r} is not one of {', '.join(FAIL_ON)}", hint="fail-on = 'warning'"
        )
    return AuditConfig(allow=allow, fail_on=fail_on, source=path)


def coerce_allow(entries: Iterable[str | AllowRule]) -> list[AllowRule]:
    return [e if isinstance(e, AllowRule) else parse_allow(e) for e in entries]


def match(rules: Sequence[AllowRule], module: str, slug: str) -> AllowRule | None:
    return next((r for r in rules if r.matches(module, slug)), None)
