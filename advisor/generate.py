"""Plan in, PyTorch source out: one runnable file with the plan's dropout sites in place.

Pure and torch-free: a plan (and the spec it came from) is mapped onto the slots of one family
template, and the template is rendered with jinja2 ``StrictUndefined``, so a missing variable is an
error and never an empty string. Every site of the plan must land in exactly one slot; a site the
template has no place for (possible only in a hand-edited ``--plan``) is a :class:`~advisor.errors.UsageError`
naming it, never silently dropped.

Slots group the sites that repeat per block (one dropout after each conv block, say). A group whose
rates are all equal becomes one ``float`` knob of the generated ``Config``; one whose rates differ
(rise with depth) becomes a tuple with one constant per block, commented with its sites.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from advisor.errors import SpecError, TemplateError, UsageError
from advisor.plan import Op, Plan, PlanSite
from advisor.spec import Spec, spec_flags

LINE_LENGTH = 88  # ruff format's default: the generated file must pass it with no configuration

# The module each kind of dropout becomes; the classes without ``nn.`` are written into the file.
MODULES: dict[str, str] = {
    "dropout": "nn.Dropout",
    "dropout1d": "nn.Dropout1d",
    "dropout2d": "nn.Dropout2d",
    "dropout3d": "nn.Dropout3d",
    "alpha-dropout": "nn.AlphaDropout",
    "feature-alpha-dropout": "nn.FeatureAlphaDropout",
    "drop-path": "DropPath",
    "locked-dropout": "LockedDropout",
    "embedding-dropout": "EmbeddingDropout",
    "weight-drop": "WeightDrop",
    "attention-dropout": "attn_p",
}
CUSTOM = ("DropPath", "LockedDropout", "EmbeddingDropout", "WeightDrop")  # written into the file, in this order

# Kinds a slot accepts, by the rank of the tensor there (DRP305: channel-wise dropout needs the right rank).
FEATURES = ("dropout", "alpha-dropout", "feature-alpha-dropout")  # (B, F)
MAPS = ("dropout", "dropout2d", "alpha-dropout", "feature-alpha-dropout")  # (B, C, H, W)
SEQUENCE = ("dropout", "locked-dropout")  # (B, T, C)

# Plain stacks deeper than this get residual connections around every layer after the first: deeper plain
# networks train worse, not better (He et al. 2016, Fig. 1), and a stack of dropout layers limits the depth a
# network can be trained at (Schoenholz et al. 2017). Recurrent stacks: Wu et al. 2016 (GNMT) add residual
# connections because plain stacks of LSTM layers train poorly beyond a few layers. The MLP threshold is the
# deepest plain stack whose smoke test passes with a rate of 0.5 in every layer (tests/test_generate_depths.py).
RESIDUAL_RNN_DEPTH = 4
RESIDUAL_MLP_DEPTH = 12
RESIDUAL_CNN_DEPTH = 12
RESIDUAL_GNN_DEPTH = 12
# GAT drops three tensors per layer (input features, attention coefficients and the aggregated W*h_j, all at
# the authors' 0.6): plain GAT stacks of 5 layers already fail the smoke test, 4 pass (tests/test_generate_depths.py).
RESIDUAL_GAT_DEPTH = 4

TEMPLATES = ("mlp", "selu_mlp", "cnn", "resnet", "rnn", "transformer", "gnn")


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` returns: the code and a short description for the command's report."""

    code: str
    template: str
    title: str
    model_class: str
    sites: int
    mc_dropout: bool
    audit_command: str  # audits the file's model (its build_model() factory) with an example input
    moved: tuple[str, ...] = ()  # sites placed by their edited after/before (see place_sites)


def template_root() -> Path:
    """The templates folder: packaged inside ``advisor/`` in a wheel, at the repository root in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "mlp.py.j2").is_file():
            return candidate
    raise TemplateError(
        "the code templates are missing from this installation",
        hint="reinstall dropout-advisor; a wheel must contain advisor/templates/",
    )


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_root())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["num"] = _num
    env.filters["comment"] = comment_lines
    env.filters["wrap"] = wrap_lines
    return env


def _bytecode_cache() -> Any:
    """Compiled templates cached per user (compiling them is most of generate's own time).

    Keyed by jinja2 on the template's name and source, so an edited template is compiled again; any
    cache that cannot be read or written is ignored, and ``DROPOUT_ADVISOR_NO_CACHE=1`` turns it off.
    """
    if os.environ.get("DROPOUT_ADVISOR_NO_CACHE") == "1":
        return None
    import jinja2

    from advisor.knowledge import cache_dir

    class QuietCache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: Any) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # an unreadable entry is compiled anew
                bucket.reset()

        def dump_bytecode(self, bucket: Any) -> None:
            try:
                super().dump_bytecode(bucket)
            except OSError:
                pass

    folder = cache_dir() / "templates"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return QuietCache(str(folder))


# ---- the public entry point ----


def generate(
    plan: Plan,
    spec: Spec | None = None,
    *,
    mc_dropout: bool | None = None,
    mc_samples: int = 30,
    output: str | None = None,
    command: str | None = None,
    base_spec: dict[str, Any] | None = None,
) -> Generated:
    """Render the plan as one PyTorch file.

    ``spec`` is what the user answered (for the header and the regenerate command); without it, the
    plan's own resolved spec is used. ``mc_dropout`` defaults to the spec's ``uncertainty`` answer.
    ``command`` replaces the regenerate command written in the header (e.g. for ``--plan`` input).
    ``base_spec`` is the ``--base`` recipe's spec: the header's command and answers leave out what it fills.
    """
    resolved = _plan_spec(plan)
    _check_layers(plan, resolved)
    plan, moved = place_sites(plan)
    spec = spec or resolved
    if mc_dropout is None:
        mc_dropout = bool(resolved.uncertainty)
    if mc_samples < 2:
        raise UsageError("--mc-samples must be at least 2", hint="e.g. --mc-samples 30")
    layout = _layout(plan, resolved)
    ctx: dict[str, Any] = {
        "version": _version(),
        "answers": _answers(spec, base_spec),
        "spec": resolved.model_dump(),
        "mc_dropout": mc_dropout,
        "mc_samples": mc_samples,
        "n_sites": len(plan.sites),
        "notes": _notes(plan),
    }
    filename = Path(output).name if output and output != "-" else "model.py"
    audit_command = f"dropout-advisor audit {shlex.quote(filename)}:build_model {layout.audit}"
    regenerate = command or regenerate_command(spec, output=output, mc_dropout=mc_dropout, base_spec=base_spec)
    ctx["command_lines"] = shell_lines(regenerate, indent=4)
    ctx["audit_lines"] = shell_lines(audit_command, indent=4)
    ctx["raw_header"] = any(line.endswith("\\") for line in ctx["command_lines"] + ctx["audit_lines"])
    ctx.update(layout.context)
    ctx["batch_norm"] = layout.template == "resnet" or bool(resolved.batch_norm and layout.template in ("mlp", "cnn"))
    ctx["groups"] = layout.groups
    ctx["g"] = {g.name: g for g in layout.groups}
    ctx["template"] = layout.template
    ctx["title"] = layout.title
    ctx["model_class"] = layout.model_class
    ctx["custom_classes"] = [c for c in CUSTOM if any(g.cls == c for g in layout.groups)]
    ctx["filename"] = filename
    ctx["filename_shell"] = shlex.quote(filename)
    try:
        template = _environment().get_template(f"{layout.template}.py.j2")
        code = template.render(**ctx)
    except Exception as exc:  # jinja2 raises its own hierarchy; any of it is a broken installation
        raise TemplateError(
            f"template {layout.template}.py.j2 failed to render: {type(exc).__name__}: {exc}",
            hint="this is a bug in dropout-advisor's templates; please report it with the plan (--format json)",
        ) from None
    code = "\n".join(line.rstrip() for line in code.splitlines()).strip("\n") + "\n"
    code = re.sub(r"\n{4,}", "\n\n\n", code)  # at most two blank lines, as ruff format allows
    return Generated(
        code=code,
        template=layout.template,
        title=layout.title,
        model_class=layout.model_class,
        sites=len(plan.sites),
        mc_dropout=mc_dropout,
        audit_command=audit_command,
        moved=tuple(moved),
    )


def load_plan(path: Path) -> Plan:
    """Read a plan written by ``recommend --format json``; errors name the file."""
    from advisor.fileio import read_user_text

    text = read_user_text(path, "plan file", "JSON")
    if not text.lstrip().startswith("{"):
        answers = path.suffix.lower() == ".toml" or "=" in text.split("\n", 1)[0]
        raise SpecError(
            f"{path}: not a valid plan: a plan is the JSON that 'recommend --format json' writes",
            hint=(
                f"this looks like an answers file: pass it as --answers {path}"
                if answers
                else "write one with 'dropout-advisor recommend ... --format json > plan.json'"
            ),
        )
    try:
        return Plan.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise SpecError(
            f"{path}: not a valid plan: field '{loc}': {err['msg']}{more}",
            hint="write one with 'dropout-advisor recommend ... --format json > plan.json'",
        ) from None


def regenerate_command(
    spec: Spec, *, output: str | None = None, mc_dropout: bool = False, base_spec: dict[str, Any] | None = None
) -> str:
    """The ``generate`` command that writes this file again (flags for the answers given, not the defaults)."""
    parts = ["dropout-advisor", "generate", *spec_flags(spec, base_spec)]
    if mc_dropout and not spec.uncertainty:
        parts.append("--mc-dropout")
    if output:
        parts += ["-o", output]
    return shlex.join(parts)


# ---- helpers shared by every family ----


def _version() -> str:
    from advisor import __version__

    return __version__


def _plan_spec(plan: Plan) -> Spec:
    try:
        return Spec.model_validate(plan.spec).resolved()
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SpecError(
            f"the plan's spec is invalid: field '{loc}': {err['msg']}",
            hint="write the plan again with 'dropout-advisor recommend ... --format json'",
        ) from None


def _check_layers(plan: Plan, spec: Spec) -> None:
    """The templates build the network from the spec; the plan's layer list must be that network."""
    from advisor.stack import build_stack

    expected = build_stack(spec)
    if [(o.kind, o.tags, o.block) for o in plan.layers] != [(o.kind, o.tags, o.block) for o in expected]:
        raise UsageError(
            "the plan's layers do not match its spec (was the layer list edited?)",
            hint="edit the spec or the sites, not the layers; or write the plan again with 'recommend --format json'",
        )
    for site in plan.sites:
        if not 0 < site.position < len(plan.layers):
            raise UsageError(
                f"site {site.id}: position {site.position} is outside the layer stack (1..{len(plan.layers) - 1})",
                hint="a site sits between two layers; fix the plan's position",
            )


def _gap_at(plan: Plan, position: int) -> tuple[str, str, int | None]:
    """(after, before, block) of the gap in front of ``plan.layers[position]``, as plans write them."""
    a, b = plan.layers[position - 1], plan.layers[position]
    return a.kind, b.kind, a.block if a.block is not None else b.block


def place_sites(plan: Plan) -> tuple[Plan, list[str]]:
    """Honour hand edits of where a site is: its ``after``/``before`` (and ``block``) name its gap.

    ``position`` is derived from them. A site whose ``after``/``before``/``block`` disagree with its
    position moves to the one gap of the network they name; when they name none, or several, that is a
    :class:`UsageError` naming the site and the fields. A ``module`` that names a different kind of dropout
    than ``kind`` is refused the same way (the code is written from ``kind``). Returns the plan with every
    site at its gap and one line per site moved.
    """
    moved: list[str] = []
    sites: list[PlanSite] = []
    gaps = range(1, len(plan.layers))
    for site in plan.sites:
        _check_module(site)
        after, before, block = _gap_at(plan, site.position)
        if (after, before) == (site.after, site.before) and (site.block is None or site.block == block):
            sites.append(site)
            continue
        wanted = (site.after, site.before)
        anywhere = [g for g in gaps if _gap_at(plan, g)[:2] == wanted]
        matches = [g for g in anywhere if site.block in (None, _gap_at(plan, g)[2])]
        if not matches and len(anywhere) == 1:
            matches = anywhere  # the one gap they name; its block was left as it was
        named = f"after '{site.after}', before '{site.before}'"
        blocks = ", ".join(sorted({str(_gap_at(plan, g)[2]) for g in anywhere}))
        if not anywhere:
            raise UsageError(
                f"site {site.id}: {named} is no gap of this network (its position {site.position} is the gap "
                f"after '{after}', before '{before}')",
                hint="edit 'after'/'before' to two consecutive entries of the plan's 'layers', "
                "or restore the site as 'recommend' wrote it",
            )
        if not matches:
            raise UsageError(
                f"site {site.id}: {named} is no gap of block {site.block}",
                hint=f"set the site's 'block' to one that has it ({blocks})",
            )
        if len(matches) > 1:
            raise UsageError(
                f"site {site.id}: {named} matches {len(matches)} gaps of this network (positions "
                f"{', '.join(str(g) for g in matches)})",
                hint=f"set the site's 'block' to choose one ({blocks})",
            )
        g = matches[0]
        a, b = plan.layers[g - 1], plan.layers[g]
        update = {"position": g, "block": _gap_at(plan, g)[2], "after_label": a.label, "before_label": b.label}
        sites.append(site.model_copy(update=update))
        moved.append(f"site {site.id}: placed by its after/before at position {g} ({a.label} -> {b.label})")
    return plan.model_copy(update={"sites": sites}), moved


# Class and function names in a site's ``module`` that pin its kind of dropout, most specific first. Module
# text names a real PyTorch or reference-code construct (``nn.LSTM(num_layers>=2, dropout=p)``); names not
# listed here (free text) pin nothing.
_MODULE_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("FeatureAlphaDropout", ("feature-alpha-dropout",)),
    ("AlphaDropout", ("alpha-dropout",)),
    ("Dropout1d", ("dropout1d",)),
    ("Dropout2d", ("dropout2d",)),
    ("Dropout3d", ("dropout3d",)),
    ("StochasticDepth", ("drop-path",)),
    ("DropPath", ("drop-path",)),
    ("drop_path", ("drop-path",)),
    ("LockedDropout", ("locked-dropout",)),
    ("WeightDrop", ("weight-drop",)),
    ("EmbeddingDropout", ("embedding-dropout",)),
    ("embedded_dropout", ("embedding-dropout",)),
    ("MultiheadAttention", ("attention-dropout",)),
    ("scaled_dot_product_attention", ("attention-dropout",)),
    ("nn.Dropout", ("dropout", "attention-dropout")),
    ("F.dropout", ("dropout", "attention-dropout")),
)


def _check_module(site: PlanSite) -> None:
    for name, kinds in _MODULE_KINDS:
        if name in site.module:
            if site.kind not in kinds and site.kind != "none":
                raise UsageError(
                    f"site {site.id}: field 'module' is '{site.module}' ({' or '.join(kinds)}), but field 'kind' "
                    f"is '{site.kind}'",
                    hint=f"generate writes each site's module from its kind: set 'kind' to '{kinds[0]}', or "
                    "restore 'module'",
                )
            return


def _answers(spec: Spec, base_spec: dict[str, Any] | None = None) -> list[str]:
    import json

    from advisor.spec import given_answers

    out = []
    if base_spec and spec.base:
        out.append(f"(every answer not listed comes from the {spec.base} recipe)")
    for key, value in given_answers(spec, base_spec).items():
        if isinstance(value, bool):
            out.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            out.append(f"{key} = {value}")
        else:
            out.append(f"{key} = {json.dumps(value)}")
    return out


def _notes(plan: Plan) -> list[str]:
    return [f"{n.text} ({', '.join(n.recommendations)})" for n in plan.notes]


# Characters of plan text that ASCII spells out; anything else non-ASCII is decomposed (é -> e) or
# replaced, so generated comments pass ruff's ambiguous-character rules (RUF001-RUF003).
_ASCII = {
    "\u2014": "-",
    "\u2013": "-",
    "\u2212": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u00d7": "x",
    "\u00b7": "*",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2248": "~",
    "\u2192": "->",
    "\u2190": "<-",
    "\u221a": "sqrt",
    "\u03b1": "alpha",
    "\u03b2": "beta",
    "\u03b5": "eps",
    "\u03bb": "lambda",
    "\u03c3": "sigma",
    "\u03a3": "sum",
    "\u00b5": "u",
    "\u03bc": "mu",
    "\u1d40": "T",
}


def ascii_text(text: str) -> str:
    """``text`` in ASCII: typographic marks spelled out, accents dropped, anything else as '?'."""
    import unicodedata

    if text.isascii():
        return text
    spelled = unicodedata.normalize("NFKD", "".join(_ASCII.get(ch, ch) for ch in text))
    kept = "".join(ch for ch in spelled if not unicodedata.combining(ch))
    return kept.encode("ascii", "replace").decode("ascii")


def wrap_lines(text: str, indent: int = 0, prefix: str = "", hanging: str | None = None) -> list[str]:
    """``text`` wrapped to LINE_LENGTH columns: ``indent`` spaces, then ``prefix`` on the first line and
    ``hanging`` on the others. Words longer than a line stay whole (ruff's E501 allows a line that is one word)."""
    import textwrap

    pad = " " * indent
    return textwrap.wrap(
        ascii_text(text),
        width=LINE_LENGTH,
        initial_indent=pad + prefix,
        subsequent_indent=pad + (" " * len(prefix) if hanging is None else hanging),
        break_long_words=False,
        break_on_hyphens=False,
    ) or [pad + prefix.rstrip()]


def comment_lines(text: str, indent: int = 0) -> str:
    """``text`` as ``# `` comment lines at ``indent``, wrapped to LINE_LENGTH columns (no final newline)."""
    return "\n".join(wrap_lines(text, indent, prefix="# ", hanging="# "))


def shell_lines(command: str, indent: int = 4) -> list[str]:
    """A shell command laid out in lines of at most LINE_LENGTH columns, continued with `` \\``."""
    quoted = [shlex.quote(w) for w in shlex.split(command)]
    words: list[str] = []  # an option stays on the line of its value
    for word in quoted:
        option = words and words[-1].startswith("-") and " " not in words[-1] and not word.startswith("-")
        if option and indent + 4 + len(words[-1]) + 1 + len(word) + 2 <= LINE_LENGTH:
            words[-1] += " " + word
        else:
            words.append(word)
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        # leave room for the indent and for " \\" on every line but the last
        if current and indent + len(candidate) + 2 > LINE_LENGTH:
            lines.append(current)
            current = "    " + word
        else:
            current = candidate
    lines.append(current)
    return [" " * indent + line + (" \\" if i < len(lines) - 1 else "") for i, line in enumerate(lines)]


def _num(value: float | int | None) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _ids(sites: list[PlanSite]) -> str:
    """'S1, S2' or, for a run of four or more consecutive IDs, 'S1-S9'."""
    ids = [s.id for s in sites]
    numbers = [int(i[1:]) if i[:1] == "S" and i[1:].isdigit() else None for i in ids]
    consecutive = all(a is not None and b == a + 1 for a, b in itertools.pairwise(numbers))
    if len(ids) > 3 and consecutive:
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(ids)


def _recs(sites: list[PlanSite]) -> str:
    recs: list[str] = []
    for s in sites:
        for r in s.recommendations:
            if r not in recs:
                recs.append(r)
    return ", ".join(recs)


@dataclass
class Group:
    """One kind of slot in a family template (say, the dropout after each conv block) and its sites."""

    name: str  # the slot's name in the template
    field: str  # the Config field that holds its rate(s)
    purpose: str  # where it sits, in words
    kind: str
    sites: list[PlanSite]
    rates: list[float | None]  # one per block of the slot (None: no site at that block)
    repeated: bool = True  # the slot repeats per block
    count: str = "self.layers"  # the tuple's length, as an expression over Config (for __post_init__)
    module: str | None = None  # overrides the module named after the kind

    @property
    def cls(self) -> str:
        return self.module or MODULES[self.kind]

    @property
    def present(self) -> list[float]:
        return [r for r in self.rates if r is not None]

    @property
    def optional(self) -> bool:
        return any(r is None for r in self.rates)

    @property
    def scalar(self) -> bool:
        return not self.repeated or (not self.optional and len(set(self.rates)) == 1)

    @property
    def annotation(self) -> str:
        if self.scalar:
            return "float"
        return "tuple[float | None, ...]" if self.optional else "tuple[float, ...]"

    @property
    def max_p(self) -> float:
        return max(self.present, default=0.0)

    def expr(self, index: str = "i") -> str:
        """The rate as the model reads it from ``cfg``."""
        return f"cfg.{self.field}" if self.scalar else f"cfg.{self.field}[{index}]"

    def declaration(self, indent: int = 4) -> str:
        """``field: annotation = value``, laid out the way ruff format lays it out."""
        head = f"{self.field}: {self.annotation} = "
        if self.scalar:
            return head + _num(self.present[0])
        items = [_num(r) for r in self.rates]
        one_line = "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if indent + len(head) + len(one_line) <= LINE_LENGTH:
            return head + one_line
        pad = " " * (indent + 4)
        return head + "(\n" + "".join(f"{pad}{item},\n" for item in items) + " " * indent + ")"

    @property
    def rate_text(self) -> str:
        ps = self.present
        if len(set(ps)) == 1:
            return f"p={_num(ps[0])}"
        return f"p={_num(min(ps))}..{_num(max(ps))}"

    @property
    def schedule(self) -> str:
        kinds = {s.schedule for s in self.sites}
        if "early" in kinds:
            return "early"
        if "late" in kinds:
            return "late"
        if kinds & {"rise-with-depth", "linear-depth"}:  # linear-depth: drop-path's l/L rule
            return "rise-with-depth"
        return "constant"

    @property
    def comments(self) -> list[str]:
        """The comment lines above the Config field: where, which sites, which recommendations, which rate."""
        lines = [f"{self.purpose[0].upper()}{self.purpose[1:]}: {self.cls}."]
        if len(self.sites) <= 4 and self.repeated and not self.scalar:
            per = ", ".join(f"{s.id} p={_num(s.p)}" for s in self.sites)
            lines.append(f"{per} ({_recs(self.sites)})")
        else:
            lines.append(f"{_ids(self.sites)} {self.rate_text} ({_recs(self.sites)})")
        if self.schedule == "rise-with-depth":
            lines.append("Scheduled: the rate rises with depth; one constant per block.")
        elif self.schedule == "early":
            lines.append("Scheduled (early dropout, DRP202): this file keeps the rate constant.")
            lines.append("Liu et al. 2023 decay it linearly to 0 over the first 50 of 300 epochs,")
            lines.append("then keep 0: set each dropout module's p once per epoch (DRP322).")
        elif self.schedule == "late":
            lines.append("Scheduled (late dropout, DRP202): this file keeps the rate constant.")
            lines.append("Liu et al. 2023 keep 0 until epoch 50 of 300, then use this rate: set")
            lines.append("each dropout module's p once per epoch (DRP322).")
        if self.optional:
            lines.append("None: no dropout at that block.")
        return lines

    @property
    def site_comment(self) -> str:
        """The short comment at the module line."""
        return f"{_ids(self.sites)} ({_recs(self.sites)}): {self.rate_text}, Config.{self.field}"

    @property
    def summary(self) -> str:
        """One header line: the sites, module, rate and where."""
        return f"{_ids(self.sites)}: {self.cls} {self.rate_text} {self.purpose} [{_recs(self.sites)}]"


@dataclass
class Slot:
    """Where a family template can hold dropout: a gap matcher, the kinds it takes, and its Config field."""

    name: str
    field: str
    purpose: str
    kinds: tuple[str, ...]
    match: Callable[[Op, Op], int | None]  # (op before the gap, op after it) -> block index, or None
    n: int = 1  # blocks the slot repeats over (1: a single site)
    count: str = "1"


@dataclass
class Layout:
    template: str
    title: str
    model_class: str
    groups: list[Group]
    audit: str  # the audit's input options for the template's default Config (its audit_options(Config()))
    context: dict[str, Any] = field(default_factory=dict)


def _group(plan: Plan, slots: list[Slot], family: str) -> dict[str, Group]:
    """Put every site into its slot; any site left over is an error naming it."""
    taken: dict[str, list[tuple[int, PlanSite]]] = {}
    for site in plan.sites:
        if site.kind == "none":
            continue
        before, after = plan.layers[site.position - 1], plan.layers[site.position]
        places = [(slot, index) for slot in slots if (index := slot.match(before, after)) is not None]
        for slot, index in places:
            if site.kind not in slot.kinds or any(i == index for i, _ in taken.get(slot.name, [])):
                continue
            taken.setdefault(slot.name, []).append((index, site))
            break
        else:
            where = f"between {site.after_label} and {site.before_label}"
            fits = [k for slot, _ in places for k in slot.kinds]
            if places and site.kind not in fits:
                raise UsageError(
                    f"site {site.id}: field 'kind' is '{site.kind}', which the {family} template cannot put {where}",
                    hint=f"kinds that fit there: {', '.join(dict.fromkeys(fits))}",
                )
            if places:
                raise UsageError(
                    f"site {site.id}: a second site {where}",
                    hint="one dropout per place: remove one of the two sites",
                )
            raise UsageError(
                f"site {site.id} ({site.kind} {where}) has no place in the {family} template",
                hint="generate supports the places 'recommend' uses; remove the site or edit its 'after'/'before'",
            )
    groups: dict[str, Group] = {}
    for slot in slots:
        entries = taken.get(slot.name)
        if not entries:
            continue
        kinds = {s.kind for _, s in entries}
        if len(kinds) > 1:
            ids = ", ".join(s.id for _, s in entries)
            raise UsageError(
                f"sites {ids} ({slot.purpose}) mix kinds {', '.join(sorted(kinds))}",
                hint="use one kind of dropout for the same place in every block",
            )
        rates: list[float | None] = [None] * slot.n
        for index, site in entries:
            if not 0 <= index < slot.n:
                raise UsageError(
                    f"site {site.id} refers to block {index + 1}, outside the network", hint="fix the plan's position"
                )
            rates[index] = site.p
        groups[slot.name] = Group(
            name=slot.name,
            field=slot.field,
            purpose=slot.purpose,
            kind=kinds.pop(),
            sites=sorted((s for _, s in entries), key=lambda s: (s.position, s.id)),
            rates=rates,
            repeated=slot.n > 1 or slot.count != "1",
            count=slot.count,
        )
    return groups


def _ordered(groups: dict[str, Group], order: list[str]) -> list[Group]:
    return [groups[name] for name in order if name in groups]


def _is(kind: str, tag: str | None = None) -> Callable[[Op], bool]:
    return lambda op: op.kind == kind and (tag is None or tag in op.tags)


def _gap(
    first: Callable[[Op], bool], second: Callable[[Op], bool], index: Callable[[Op, Op], int | None]
) -> Callable[[Op, Op], int | None]:
    def match(a: Op, b: Op) -> int | None:
        return index(a, b) if first(a) and second(b) else None

    return match


def _any(_op: Op) -> bool:
    return True


def _zero(_a: Op, _b: Op) -> int:
    return 0


def _block_of_first(a: Op, _b: Op) -> int | None:
    return a.block


def _block_of_second(_a: Op, b: Op) -> int | None:
    return b.block


ACTIVATIONS = {
    "relu": "nn.ReLU()",
    "leaky-relu": "nn.LeakyReLU(0.01)",
    "gelu": "nn.GELU()",
    "silu": "nn.SiLU()",
    "tanh": "nn.Tanh()",
    "sigmoid": "nn.Sigmoid()",
    "selu": "nn.SELU()",
    "elu": "nn.ELU()",
}


def _layout(plan: Plan, s: Spec) -> Layout:
    builders: dict[str, Callable[[Plan, Spec], Layout]] = {
        "mlp": _mlp,
        "cnn": _cnn,
        "resnet": _resnet,
        "rnn": _rnn,
        "transformer": _transformer,
        "gnn": _gnn,
    }
    return builders[s.arch](plan, s)


# ---- MLP and SELU MLP ----


def _mlp(plan: Plan, s: Spec) -> Layout:
    n = s.layers or 1
    selu = s.activation == "selu" and not s.batch_norm
    after_act = _gap(_is("activation", "hidden"), _any, _block_of_first)
    slots = [
        Slot(
            "input",
            "input_dropout",
            "on the input features, before the first linear layer",
            FEATURES,
            _gap(_is("input"), _is("linear"), _zero),
        ),
        Slot(
            "hidden",
            "hidden_dropout",
            "after each hidden layer's activation, before the next linear layer",
            FEATURES,
            after_act,
            n=n,
            count="self.layers",
        ),
    ]
    groups = _group(plan, slots, "MLP")
    return Layout(
        template="selu_mlp" if selu else "mlp",
        title="Self-normalizing MLP (SELU) for tabular data" if selu else "MLP for tabular data",
        model_class="SNN" if selu else "MLP",
        groups=_ordered(groups, ["input", "hidden"]),
        audit="--input-shape 8,32",
        context={
            "activation": ACTIVATIONS[s.activation or "relu"],
            "batch_norm": bool(s.batch_norm),
            "residual": n > RESIDUAL_MLP_DEPTH,
            "layers": n,
            "width": s.width,
        },
    )


# ---- plain CNN ----


def _cnn(plan: Plan, s: Spec) -> Layout:
    n = s.layers or 1
    fc = s.fc_layers or 0 if s.head == "fc" else 0
    slots = [
        Slot(
            "conv",
            "conv_dropout",
            "after each conv block's activation" + (", before pooling" if s.pooling != "none" else ""),
            MAPS,
            _gap(_is("activation", "conv"), _any, _block_of_first),
            n=n,
            count="self.layers",
        ),
        Slot(
            "head",
            "head_dropout",
            "on the pooled features, before the classifier" if s.head == "gap" else "on the flattened features",
            FEATURES,
            _gap(lambda o: o.kind in ("flatten", "global-pool"), _any, _zero),
        ),
        Slot(
            "fc",
            "fc_dropout",
            "after each hidden FC layer's activation",
            FEATURES,
            _gap(_is("activation", "head"), _any, _block_of_first),
            n=fc,
            count="self.fc_layers",
        ),
    ]
    groups = _group(plan, slots, "CNN")
    return Layout(
        template="cnn",
        title="CNN image classifier",
        model_class="CNN",
        groups=_ordered(groups, ["conv", "head", "fc"]),
        audit="--input-shape 8,3,32,32",
        context={
            "activation": ACTIVATIONS[s.activation or "relu"],
            "batch_norm": bool(s.batch_norm),
            "pooling": s.pooling,
            "residual": n > RESIDUAL_CNN_DEPTH,
            "head": s.head,
            "fc_layers": fc,
            "layers": n,
            "width": s.width,
            "fc_width": 16 * (s.width or 64),
            "init_gain": _gain(s.activation or "relu"),
        },
    )


# ---- ResNet / Wide ResNet ----


def _resnet(plan: Plan, s: Spec) -> Layout:
    n = s.layers or 1
    slots = [
        Slot(
            "mid",
            "block_dropout",
            "inside each residual branch, between its two convolutions",
            MAPS,
            _gap(_is("activation", "branch-mid"), _is("conv"), _block_of_first),
            n=n,
            count="self.layers",
        ),
        Slot(
            "drop_path",
            "drop_path",
            "on each residual branch before it joins the shortcut (stochastic depth)",
            ("drop-path",),
            _gap(_any, _is("residual-add"), _block_of_second),
            n=n,
            count="self.layers",
        ),
        Slot(
            "head",
            "head_dropout",
            "on the pooled features, before the classifier",
            FEATURES,
            _gap(_is("global-pool"), _is("output"), _zero),
        ),
    ]
    groups = _group(plan, slots, "ResNet")
    wide = bool(s.wide)
    return Layout(
        template="resnet",
        title="Wide ResNet image classifier (pre-activation blocks)" if wide else "ResNet image classifier",
        model_class="WideResNet" if wide else "ResNet",
        groups=_ordered(groups, ["mid", "drop_path", "head"]),
        audit="--input-shape 8,3,32,32",
        context={
            "activation": ACTIVATIONS[s.activation or "relu"],
            "wide": wide,
            "layers": n,
            "width": s.width,
        },
    )


# ---- RNN ----


def _rnn(plan: Plan, s: Spec) -> Layout:
    n = s.layers or 1
    if s.rnn_task == "seq2seq":
        raise UsageError(
            "generate has no template for a seq2seq RNN (encoder-decoder)",
            hint="generate the decoder alone with --task lm, or a sequence classifier with --task classifier",
        )
    if s.rnn_task == "lm" and s.bidirectional:
        raise UsageError(
            "a bidirectional RNN language model would see the tokens it predicts",
            hint="use --no-bidirectional for --task lm, or --task classifier",
        )
    embeddings = bool(s.embeddings)
    slots = [
        Slot(
            "embed",
            "embed_dropout",
            "on whole rows of the embedding matrix (word dropout)",
            ("embedding-dropout",),
            _gap(_is("input"), _is("embedding"), _zero),
        ),
        Slot(
            "input",
            "input_dropout",
            "on the RNN's input, " + ("after the embedding" if embeddings else "on the input features"),
            SEQUENCE,
            _gap(lambda o: o.kind in ("input", "embedding"), _is("rnn-layer"), _zero),
        ),
        Slot(
            "weight",
            "weight_drop",
            "on each layer's hidden-to-hidden weights (DropConnect)",
            ("weight-drop",),
            _gap(_any, _is("rnn-layer"), _block_of_second),
            n=n,
            count="self.layers",
        ),
        Slot(
            "between",
            "hidden_dropout",
            "between stacked recurrent layers",
            SEQUENCE,
            _gap(_is("rnn-layer"), _is("rnn-layer"), _block_of_first),
            n=max(n - 1, 0),
            count="self.layers - 1",
        ),
        Slot(
            "output",
            "output_dropout",
            "on the last layer's output, before the " + ("decoder" if s.rnn_task == "lm" else "classifier"),
            SEQUENCE,
            _gap(_is("rnn-layer"), _is("output"), _zero),
        ),
    ]
    groups = _group(plan, slots, "RNN")
    between = groups.get("between")
    # Plain stacks of more than RESIDUAL_RNN_DEPTH recurrent layers barely train (Wu et al. 2016, GNMT); deeper
    # stacks get residual connections around the layers after the first, which nn.LSTM cannot do.
    residual = n > RESIDUAL_RNN_DEPTH
    # nn.LSTM(dropout=p) puts plain dropout between its layers; use it when that is exactly the plan.
    fused = (
        not residual
        and "weight" not in groups
        and (between is None or (between.kind == "dropout" and between.scalar and between.max_p > 0))
    )
    cell = (s.cell or "lstm").upper()
    lm = s.rnn_task == "lm"
    title = f"{cell} " + ("language model" if lm and embeddings else "sequence tagger" if lm else "sequence classifier")
    return Layout(
        template="rnn",
        title=title,
        model_class=f"{cell}LanguageModel" if lm and embeddings else f"{cell}Tagger" if lm else f"{cell}Classifier",
        groups=_ordered(groups, ["embed", "input", "weight", "between", "output"]),
        audit="--input-shape 8,35 --input-dtype long" if embeddings else "--input-shape 8,35,32",
        context={
            "cell": cell,
            "lm": lm,
            "embeddings": embeddings,
            "bidirectional": bool(s.bidirectional),
            "fused": fused,
            "residual": residual,
            "layers": n,
            "width": s.width,
        },
    )


# ---- Transformer ----


def _transformer(plan: Plan, s: Spec) -> Layout:
    n = s.layers or 1
    if s.transformer == "encoder-decoder":
        raise UsageError(
            "generate has no template for an encoder-decoder Transformer",
            hint="generate an encoder classifier (--transformer encoder) or a decoder-only LM (--transformer decoder)",
        )
    decoder = s.transformer == "decoder"
    vision = not decoder and s.modality == "image"
    positions = s.positions or "additive"
    if positions == "relative" or (vision and positions != "additive"):
        raise UsageError(
            f"generate has no template for {positions} positions"
            + (" in a vision Transformer" if vision and positions != "relative" else ""),
            hint="generate writes learned absolute positions, or rotary ones (--positions rotary) for text; "
            "use --positions additive, or write that part by hand",
        )
    resid = ("dropout", "drop-path")
    slots = [
        Slot(
            "embed",
            "embed_dropout",
            ("on the token embeddings" if positions == "rotary" else "on the sum of token and position embeddings")
            + (", after its LayerNorm" if s.embedding_norm else ""),
            FEATURES,
            # the gap after the embedding section, whatever ends it (positions, BERT's LayerNorm, or neither)
            _gap(lambda a: "embed" in a.tags, lambda b: "embed" not in b.tags, _zero),
        ),
        Slot(
            "attn",
            "attn_dropout",
            "on the attention probabilities",
            ("attention-dropout",),
            _gap(_is("attention-weights"), _is("attention"), _block_of_first),
            n=n,
            count="self.layers",
        ),
        Slot(
            "attn_resid",
            "attn_resid_dropout",
            "on the attention output, before the residual add",
            resid,
            _gap(_is("attention"), _is("residual-add"), _block_of_first),
            n=n,
            count="self.layers",
        ),
        Slot(
            "ffn",
            "ffn_dropout",
            "on the feed-forward hidden activation",
            FEATURES,
            _gap(_is("activation", "ffn"), _is("linear", "ffn-out"), _block_of_first),
            n=n,
            count="self.layers",
        ),
        Slot(
            "ffn_resid",
            "ffn_resid_dropout",
            "on the feed-forward output, before the residual add",
            resid,
            _gap(_is("linear", "ffn-out"), _is("residual-add"), _block_of_first),
            n=n,
            count="self.layers",
        ),
        Slot(
            "head",
            "head_dropout",
            "on the pooled representation, before the classifier",
            FEATURES,
            _gap(_is("global-pool"), _is("output"), _zero),
        ),
    ]
    groups = _group(plan, slots, "Transformer")
    if "attn" in groups:
        groups["attn"].module = "F.scaled_dot_product_attention(dropout_p=)"
        if groups["attn"].optional:
            raise UsageError(
                "attention dropout must be in every Transformer block or in none",
                hint="give every block's attention-weights gap a site, or remove them all",
            )
    for name, prefix in (("attn_resid", "drop_path_attn"), ("ffn_resid", "drop_path_ffn")):
        g = groups.get(name)
        if g is not None and g.kind == "drop-path":
            g.field = prefix
            g.purpose = g.purpose.replace("on the", "drops the whole").replace(", before", " per sample, before")
    if vision:
        title = "Vision Transformer classifier (" + (s.norm or "pre") + "-norm)"
        model_class = "ViT"
    elif decoder:
        title = "Decoder-only Transformer language model (" + (s.norm or "pre") + "-norm)"
        model_class = "GPT"
    else:
        title = "Transformer encoder classifier (" + (s.norm or "pre") + "-norm)"
        model_class = "TransformerClassifier"
    width = s.width or 512
    return Layout(
        template="transformer",
        title=title,
        model_class=model_class,
        groups=_ordered(groups, ["embed", "attn", "attn_resid", "ffn", "ffn_resid", "head"]),
        audit="--input-shape 2,3,224,224" if vision else "--input-shape 2,128 --input-dtype long",
        context={
            "activation": ACTIVATIONS[s.activation or "gelu"],
            "decoder": decoder,
            "vision": vision,
            "embed_norm": bool(s.embedding_norm) and not vision,
            "rotary": positions == "rotary",
            "pre_norm": s.norm != "post",
            "smoke_lr": _num(round(min(3e-3, 1.6e-2 / n), 6)),
            "layers": n,
            "width": width,
            "heads": max(1, width // 64) if width % 64 == 0 else _heads(width),
        },
    )


def _heads(width: int) -> int:
    for h in (8, 4, 2):
        if width % h == 0:
            return h
    return 1


# ---- GNN ----


def _gnn(plan: Plan, s: Spec) -> Layout:
    n = s.layers or 2
    gat = s.gnn == "gat"
    if gat:
        slots = [
            Slot(
                "feat",
                "feature_dropout",
                "on each layer's input node features",
                FEATURES,
                _gap(_any, _is("linear", "gat"), _block_of_second),
                n=n,
                count="self.layers",
            ),
            Slot(
                "attn",
                "attn_dropout",
                "on the attention coefficients over each node's neighbours",
                ("attention-dropout", "dropout"),
                _gap(_is("attention-weights", "gat"), _any, _block_of_first),
                n=n,
                count="self.layers",
            ),
            Slot(
                "value",
                "value_dropout",
                "on the transformed features W·h_j the aggregation reads",
                FEATURES,
                _gap(_is("attention", "gat"), _any, _block_of_first),
                n=n,
                count="self.layers",
            ),
        ]
    else:
        slots = [
            Slot(
                "feat",
                "feature_dropout",
                "on each graph convolution's input node features",
                FEATURES,
                _gap(_any, lambda o: o.kind in ("graph-conv", "output") and "gcn" in o.tags, _block_of_second),
                n=n,
                count="self.layers",
            ),
        ]
    groups = _group(plan, slots, "GNN")
    if "attn" in groups:
        groups["attn"].kind = "attention-dropout"
        groups["attn"].module = "nn.Dropout"
    width = s.width or 16
    return Layout(
        template="gnn",
        title="Graph attention network (GAT), dense adjacency" if gat else "Graph convolutional network (GCN)",
        model_class="GAT" if gat else "GCN",
        groups=_ordered(groups, ["feat", "attn", "value"]),
        audit="--input-shape 64,32 --input-shape 64,64",
        context={
            "gat": gat,
            "residual": n > (RESIDUAL_GAT_DEPTH if gat else RESIDUAL_GNN_DEPTH),
            "activation": "F.elu" if gat else _functional(s.activation or "relu"),
            "layers": n,
            "width": width,
            "heads": _heads(width) if gat else 1,
        },
    )


def _gain(activation: str) -> str:
    """The ``nonlinearity`` that ``nn.init.kaiming_normal_`` knows for an activation (ReLU's for the smooth
    ReLU-like ones it does not know: GELU, SiLU, ELU)."""
    return {"leaky-relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid", "selu": "linear"}.get(activation, "relu")


def _functional(activation: str) -> str:
    return {
        "relu": "F.relu",
        "leaky-relu": "F.leaky_relu",
        "gelu": "F.gelu",
        "silu": "F.silu",
        "tanh": "torch.tanh",
        "sigmoid": "torch.sigmoid",
        "selu": "F.selu",
        "elu": "F.elu",
    }[activation]
