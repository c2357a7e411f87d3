"""The advisor: `recommend` (flags or an answers file) and `ask` (the interview, or a question in words)."""

from __future__ import annotations

import inspect
import shlex
import sys
import typing
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import typer

from advisor.cli.common import DocFormat, emit_json, emit_text, guarded, print_error
from advisor.errors import EXIT_INTERRUPTED, Interrupted, SpecError, UsageError


def _spec_flags(
    arch: str | None = typer.Option(
        None,
        "--arch",
        metavar="[mlp|cnn|resnet|rnn|transformer|gnn]",
        help="mlp, cnn, resnet, rnn, transformer or gnn.",
    ),
    layers: int | None = typer.Option(
        None,
        "--layers",
        help="Hidden layers / conv blocks / residual blocks / recurrent or Transformer layers / graph-conv layers.",
    ),
    width: int | None = typer.Option(None, "--width", help="Hidden units, channels or d_model."),
    batch_norm: bool | None = typer.Option(None, "--batch-norm/--no-batch-norm", help="Uses BatchNorm."),
    activation: str | None = typer.Option(
        None,
        "--activation",
        metavar="[relu|leaky-relu|gelu|silu|tanh|sigmoid|selu|elu]",
        help="relu, leaky-relu, gelu, silu, tanh, sigmoid, selu or elu.",
    ),
    pooling: str | None = typer.Option(None, "--pooling", metavar="[max|avg|none]", help="cnn: max, avg or none."),
    head: str | None = typer.Option(
        None, "--head", metavar="[fc|gap]", help="cnn: fc (flatten + FC layers) or gap (global pool)."
    ),
    fc_layers: int | None = typer.Option(None, "--fc-layers", help="cnn: hidden FC layers in the head."),
    wide: bool | None = typer.Option(None, "--wide/--no-wide", help="resnet: a Wide ResNet."),
    cell: str | None = typer.Option(None, "--cell", metavar="[lstm|gru]", help="rnn: lstm or gru."),
    bidirectional: bool | None = typer.Option(None, "--bidirectional/--no-bidirectional", help="rnn."),
    rnn_task: str | None = typer.Option(
        None, "--task", metavar="[lm|classifier|seq2seq]", help="rnn: lm, classifier or seq2seq."
    ),
    embeddings: bool | None = typer.Option(None, "--embeddings/--no-embeddings", help="rnn: token embeddings."),
    transformer: str | None = typer.Option(
        None,
        "--transformer",
        metavar="[encoder|decoder|encoder-decoder]",
        help="transformer: encoder, decoder or encoder-decoder.",
    ),
    norm: str | None = typer.Option(
        None, "--norm", metavar="[pre|post]", help="transformer: pre or post (LayerNorm placement)."
    ),
    positions: str | None = typer.Option(
        None,
        "--positions",
        metavar="[additive|rotary|relative]",
        help="transformer: additive (summed with the embeddings), rotary (RoPE) or relative (T5 bias).",
    ),
    embedding_norm: bool | None = typer.Option(
        None, "--embedding-norm/--no-embedding-norm", help="transformer: LayerNorm on the embedding sum (BERT)."
    ),
    gnn: str | None = typer.Option(None, "--gnn", metavar="[gcn|gat]", help="gnn: gcn or gat."),
    modality: str | None = typer.Option(
        None,
        "--modality",
        metavar="[tabular|image|text|audio|graph|sequence|other]",
        help="tabular, image, text, audio, graph, sequence or other.",
    ),
    samples: str | None = typer.Option(
        None,
        "--samples",
        metavar="COUNT",
        help="Training examples, e.g. 50000 or 50k; for a language model (--task lm, a Transformer decoder), tokens.",
    ),
    params: str | None = typer.Option(None, "--params", metavar="COUNT", help="Model parameters, e.g. 25M or 7B."),
    regime: str | None = typer.Option(
        None, "--regime", metavar="[scratch|fine-tuning|pretraining]", help="scratch, fine-tuning or pretraining."
    ),
    overfitting: str | None = typer.Option(
        None, "--overfitting", metavar="[none|mild|strong|unknown]", help="none, mild, strong or unknown."
    ),
    underfitting: bool | None = typer.Option(
        None, "--underfitting/--no-underfitting", help="The model underfits (training loss stays high)."
    ),
    uncertainty: bool | None = typer.Option(
        None, "--uncertainty/--no-uncertainty", help="You want MC-dropout uncertainty estimates."
    ),
    base: str | None = typer.Option(
        None,
        "--base",
        metavar="NAME",
        help="A reference recipe, e.g. bert-base-uncased, llama-2-7b, vit-b-16: the pretrained model you fine-tune, "
        "or the model you train from scratch after. Its spec fills what you do not give.",
    ),
    answers: Path | None = typer.Option(
        None, "--answers", metavar="FILE", help="Replay a saved interview (TOML or JSON)."
    ),
) -> None:
    """Only its signature is used: the flags shared by `recommend` and `ask`."""


_SPEC_HINTS = typing.get_type_hints(_spec_flags)
_SPEC_PARAMS = [p.replace(annotation=_SPEC_HINTS[p.name]) for p in inspect.signature(_spec_flags).parameters.values()]
_SPEC_NAMES = [p.name for p in _SPEC_PARAMS]


def with_spec_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every spec flag; the command receives them as one dict, ``flags``."""
    hints = typing.get_type_hints(fn)
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values() if p.name != "flags"]

    @wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in _SPEC_NAMES}
        return fn(flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + _SPEC_PARAMS)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + _SPEC_PARAMS}
    return wrapper


def _gather(flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Answers file first, flags on top; counts like '50k' parsed.

    Returns the values and, per field, where it came from, so errors name the file or 'flags'.
    """
    from advisor.interview import parse_count
    from advisor.spec import load_answers

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    answers_path = flags.pop("answers", None)
    if answers_path is not None:
        values.update(load_answers(answers_path))
        origins = dict.fromkeys(values, str(answers_path))
    for key in ("samples", "params"):
        raw = flags.get(key)
        if raw is not None:
            try:
                flags[key] = parse_count(str(raw))
            except ValueError as exc:
                raise SpecError(f"--{key}: {exc}", hint="e.g. --samples 50k or --params 7B") from None
            if flags[key] < 1:
                raise SpecError(f"--{key}: must be at least 1", hint="leave it out if unknown")
    given = {k: v for k, v in flags.items() if v is not None}
    values.update(given)
    origins.update(dict.fromkeys(given, "flags"))
    return values, origins


def spec_from_flags(flags: dict[str, Any], command: str) -> tuple[Any, dict[str, Any] | None]:
    """Answers file, then flags, then the --base recipe under both: the validated spec and the recipe's spec.

    Shared by ``recommend`` and ``generate``; every mistake is a :class:`SpecError` (exit 2).
    """
    from advisor.advise.base import fill_from_base
    from advisor.interview import require_complete
    from advisor.knowledge import default_kb
    from advisor.spec import build_spec

    values, origins = _gather(flags)
    recipe = None
    if values.get("base") is not None:
        values, recipe = fill_from_base(values, default_kb())
    require_complete(values, command)
    spec = build_spec(values, source=origins)
    return spec, (dict(recipe.spec) if recipe is not None else None)


def _render(plan: Any, fmt: DocFormat) -> None:
    from advisor.explain import plan_json, plan_markdown
    from advisor.knowledge import default_kb

    if fmt is DocFormat.json:
        emit_json(plan_json(plan))
    elif fmt is DocFormat.markdown:
        emit_text(plan_markdown(plan, default_kb()))
    else:
        from advisor.views import print_plan

        print_plan(plan, default_kb())


def equivalent_command(spec: Any, base_spec: dict[str, Any] | None = None) -> str:
    from advisor.spec import spec_flags

    return shlex.join(["dropout-advisor", "recommend", *spec_flags(spec, base_spec)])


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend_cmd)
    app.command("ask")(ask_cmd)


@with_spec_flags
@guarded
def recommend_cmd(
    flags: dict[str, Any],
    target: str | None = typer.Argument(
        None,
        metavar="TARGET",
        help="Your model: path/to/file.py:NAME or package.module:NAME (a class or factory), as for audit. "
        "The plan then names its own modules, with the change list against its dropout today.",
    ),
    fmt: DocFormat = typer.Option(DocFormat.text, "--format", "-f", help="text, json or markdown."),
    save_answers: Path | None = typer.Option(
        None, "--save-answers", metavar="FILE", help="Also save these answers to a file."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite --save-answers' file if it exists."),
    input_shape: list[str] = typer.Option(
        None, "--input-shape", "-s", help="TARGET: example input shape, batch first: 8,3,32,32. Repeat for several."
    ),
    input_dtype: list[str] = typer.Option(
        None, "--input-dtype", help="TARGET: float, or long for token ids; one for all inputs or one per shape."
    ),
    kwargs: str | None = typer.Option(
        None, "--kwargs", help="TARGET: constructor arguments as JSON: '{\"depth\": 50}'."
    ),
    device: str = typer.Option(
        "auto", "--device", help="TARGET: meta (no weight memory), cpu, or auto (meta, CPU fallback)."
    ),
    hf_config: Path | None = typer.Option(
        None, "--hf-config", help="A transformers or timm config.json (local file): the value of each dropout field."
    ),
) -> None:
    """A placement plan: for your model (TARGET or --hf-config), or from flags or an answers file.

    With TARGET the model is traced as audit does; the plan names its own modules, compares them with
    the dropout it has today, and the flags override what was read from it. With --base NAME the plan
    follows that reference recipe: fine-tuning keeps its sites and rates, pretraining and training from
    scratch follow its published configuration.

    \b
    Examples:
      dropout-advisor recommend --arch cnn --layers 3 --pooling max
      dropout-advisor recommend --base bert-base --regime fine-tuning --samples 8k
      dropout-advisor recommend --arch rnn --samples 50k --format json
      dropout-advisor recommend --arch mlp --save-answers net.toml
      dropout-advisor recommend --answers net.toml --overfitting strong
      dropout-advisor recommend net.py:Net -s 8,3,32,32 --samples 50k
      dropout-advisor recommend --hf-config config.json --regime fine-tuning
    """
    if target is not None or hf_config is not None:
        _recommend_model(flags, target, hf_config, fmt, save_answers, input_shape, input_dtype, kwargs, device)
        return
    from advisor.recommend import recommend
    from advisor.spec import answers_toml

    spec, base_spec = spec_from_flags(flags, "recommend")
    plan = recommend(spec)
    if save_answers is not None:
        from advisor.fileio import write_text_atomic

        result = write_text_atomic(save_answers, answers_toml(spec, base_spec), force=force)
        sys.stderr.write(f"answers {result.value}: {save_answers}{result.via}\n")
    _render(plan, fmt)


_SITUATION = ("samples", "regime", "overfitting", "underfitting", "uncertainty")


def _recommend_model(
    flags: dict[str, Any],
    target: str | None,
    hf_config: Path | None,
    fmt: DocFormat,
    save_answers: Path | None,
    input_shape: list[str] | None,
    input_dtype: list[str] | None,
    kwargs: str | None,
    device: str,
) -> None:
    """``recommend TARGET`` and ``recommend --hf-config FILE``: advice for a model that exists."""
    from advisor.errors import UsageError

    if target is not None and hf_config is not None:
        raise UsageError("give a model TARGET or --hf-config, not both", hint="--hf-config reads a config file only")
    if save_answers is not None:
        raise UsageError(
            "--save-answers saves the answers of a described network; a model is read, not described",
            hint="save the plan instead: --format json > plan.json",
        )
    values, _origins = _gather(flags)
    situation = {k: values.pop(k) for k in _SITUATION if k in values}
    base = values.pop("base", None)
    if hf_config is not None:
        from advisor.advise.hf_config import advice_markdown, advice_text, advise_config

        advice = advise_config(
            hf_config,
            regime=situation.get("regime", "fine-tuning"),
            overfitting=situation.get("overfitting", "unknown"),
            base=base,
        )
        if fmt is DocFormat.json:
            emit_json(advice.model_dump(mode="json"))
        else:
            emit_text(advice_markdown(advice) if fmt is DocFormat.markdown else advice_text(advice))
        return
    assert target is not None
    from advisor.advise.model_view import plan_json, plan_markdown, plan_text
    from advisor.advise.target import recommend_target
    from advisor.audit import load

    shapes = [load.parse_shape(s) for s in (input_shape or [])]
    dtypes = input_dtype or ["float"]
    for d in dtypes:
        if d not in ("float", "long"):
            raise UsageError(f"--input-dtype '{d}' is not float or long", hint="use long for token ids")
    plan = recommend_target(
        target,
        shapes=shapes,
        dtypes=dtypes,
        kwargs=load.parse_kwargs(kwargs),
        device=device,
        progress=_progress,
        samples=situation.get("samples"),
        regime=situation.get("regime", "scratch"),
        overfitting=situation.get("overfitting", "unknown"),
        underfitting=bool(situation.get("underfitting", False)),
        uncertainty=bool(situation.get("uncertainty", False)),
        base=base,
        overrides=values,
    )
    if fmt is DocFormat.json:
        emit_json(plan_json(plan))
    else:
        emit_text(plan_markdown(plan) if fmt is DocFormat.markdown else plan_text(plan))


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"{message}...\n")


def _prompt_fn(console: Any) -> Callable[[Any, Any], str]:
    from rich.markup import escape
    from rich.prompt import Prompt

    def prompt(q: Any, default: Any) -> str:
        shown = escape(q.text)
        if q.choices:
            shown += " " + escape(f"[{'/'.join(q.choices)}]")
        if default is not None:
            d = ("yes" if default else "no") if isinstance(default, bool) else default
            shown += f" (default: {d})"
        shown += " — or 'back'"
        value = Prompt.ask(shown, console=console, default="", show_default=False)
        return str(value)

    return prompt


@with_spec_flags
@guarded
def ask_cmd(
    flags: dict[str, Any],
    question: list[str] = typer.Argument(
        None,
        metavar="[QUESTION]",
        help='A question in plain words, e.g. "should dropout go before or after max pooling?"; '
        "without it, an interview about your network.",
    ),
    fmt: DocFormat = typer.Option(DocFormat.text, "--format", "-f", help="text, json or markdown."),
    limit: int = typer.Option(6, "--limit", "-n", min=1, max=50, help="How many answers to a question."),
) -> None:
    """Answer a question in words, or interview you about your network and show a placement plan.

    Every question of the interview is also a flag (see `recommend`). Type 'back' to revise the previous
    answer; Ctrl-C stops (exit 130). Without a terminal, answers are read from standard input; if it
    ends before the family is known, the command exits 2 naming what is missing.

    \b
    Examples:
      dropout-advisor ask
      dropout-advisor ask "dropout before or after max pooling?"
      dropout-advisor ask --arch cnn          # skip the first question
    """
    if question:
        text = " ".join(question)
        if not text.strip():
            raise UsageError(
                "the question is empty",
                hint='ask in words, e.g. dropout-advisor ask "dropout before or after max pooling?", '
                "or run 'dropout-advisor ask' with no argument for the interview",
            )
        _answer_question(text, fmt, limit)
        return
    from rich.console import Console

    from advisor.interview import InputEnded, finish, run_interview
    from advisor.recommend import recommend

    values, origins = _gather(flags)
    from advisor.spec import check_given

    check_given(values, origins)  # before the first question
    if values.get("base"):
        from advisor.advise.base import fill_from_base
        from advisor.knowledge import default_kb

        values["base"] = fill_from_base(values, default_kb())[1].key  # type: ignore[union-attr]
    if values.pop("underfitting", False):
        values["overfitting"] = "underfitting"
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    interactive = sys.stdin.isatty()
    try:
        answers = run_interview(
            values,
            _prompt_fn(console),
            show_error=lambda m: console.print(f"[red]✗ {m}[/red] — please answer again"),
        )
    except InputEnded as ended:
        from advisor.interview import missing_required

        if interactive:
            raise Interrupted("input closed", hint="nothing was written; run the command again when ready") from None
        missing = missing_required(ended.answers)
        if missing:
            raise SpecError(
                "no terminal and not enough answers: missing "
                + ", ".join(missing)
                + " (every other question has a default)",
                hint="pass --arch and the other flags, --answers FILE, or run 'dropout-advisor ask' in a terminal",
            ) from None
        answers = ended.answers
        console.print("[dim]input ended: the remaining questions take their defaults[/dim]")
    if answers.get("arch") == "file":
        _ask_model(answers, fmt, console)
        return
    spec = finish(answers, origins)
    plan = recommend(spec)
    _render(plan, fmt)
    base_spec = _base_spec(spec)
    console.print(f"\nThe same plan without questions:\n  {equivalent_command(spec, base_spec)}")
    if spec.regime == "fine-tuning" and not spec.base:
        console.print("[dim]Fine-tuning a model with a recipe here? Add --base NAME (e.g. --base bert-base).[/dim]")
    _offer_save(spec, plan, console, base_spec)


def _base_spec(spec: Any) -> dict[str, Any] | None:
    if not spec.base:
        return None
    from advisor.knowledge import default_kb

    return dict(default_kb().recipe(spec.base).spec)


def _ask_model(answers: dict[str, Any], fmt: DocFormat, console: Any) -> None:
    """The interview's 'I have the model in a file' branch: the plan `recommend TARGET` gives."""
    from advisor.interview import to_spec_values

    values = to_spec_values(answers)
    flags: list[str] = []
    for key in _SITUATION:
        value = values.get(key)
        if value is None or value is False or (key, value) in (("regime", "scratch"), ("overfitting", "unknown")):
            continue
        flags += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    argv = [str(answers["model_file"]), "-s", str(answers["input_shape"])]
    if answers.get("input_dtype", "float") != "float":
        argv += ["--input-dtype", str(answers["input_dtype"])]
    _recommend_model(
        {k: v for k, v in values.items() if k in _SITUATION},
        str(answers["model_file"]),
        None,
        fmt,
        None,
        [str(answers["input_shape"])],
        [str(answers.get("input_dtype", "float"))],
        None,
        "auto",
    )
    console.print(
        f"\nThe same plan without questions:\n  {shlex.join(['dropout-advisor', 'recommend', *argv, *flags])}"
    )


def _ask_path(console: Any, question: str, default: str) -> tuple[Path, bool] | None:
    """Ask for a file name; an existing file is only replaced after a yes. None: the user gave up."""
    from rich.prompt import Confirm, Prompt

    while True:
        path = Path(Prompt.ask(question, console=console, default=default))
        if not path.exists():
            return path, False
        if path.is_dir():
            console.print(f"[red]✗ {path} is a folder[/red] — give a file name")
            continue
        if Confirm.ask(f"{path} exists. Overwrite it?", console=console, default=False):
            return path, True


def _offer_save(spec: Any, plan: Any, console: Any, base_spec: dict[str, Any] | None = None) -> None:
    """After the plan: offer to save the answers, then to generate the model code."""
    from rich.prompt import Confirm

    from advisor.errors import AdvisorError
    from advisor.fileio import write_text_atomic
    from advisor.spec import answers_toml

    try:
        if Confirm.ask("Save these answers to a file?", console=console, default=False):
            chosen = _ask_path(console, "File name", "dropout-answers.toml")
            if chosen is not None:
                path, force = chosen
                result = write_text_atomic(path, answers_toml(spec, base_spec), force=force)
                console.print(f"answers {result.value}: {path}  (replay: dropout-advisor recommend --answers {path})")
        if Confirm.ask("Generate PyTorch code for this plan?", console=console, default=False):
            from advisor.generate import generate

            chosen = _ask_path(console, "File name", "model.py")
            if chosen is not None:
                path, force = chosen
                code = generate(plan, spec, output=str(path))
                result = write_text_atomic(path, code.code, force=force)
                console.print(
                    f"{result.value} {path}: {code.title}, {code.sites} dropout site(s); run its smoke test: "
                    f"python {path}"
                )
    except EOFError:
        return
    except AdvisorError as exc:
        print_error(exc.message, exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print_error("interrupted", "the plan above is complete; nothing more was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _answer_question(text: str, fmt: DocFormat, limit: int) -> None:
    from advisor.knowledge import default_kb
    from advisor.qa import answer

    kb = default_kb()
    result = answer(text, kb, limit=limit)
    if fmt is DocFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    md = result.markdown()
    if fmt is DocFormat.markdown:
        emit_text(md)
        return
    from advisor.views import print_markdown

    print_markdown(md)
