"""Generate every template (and each option that changes its shape) and run each smoke test on one device.

    python bench/smoke_all_devices.py [--device auto|cpu|cuda|mps|xpu] [--steps N] [--depths 1,2,5,8,12]
                                      [--recipes] [--keep DIR]

Prints one line per generated file: the outcome, steps, time per step, the eval loss before and after, and
the number of dropout sites. ``--depths`` also generates every family and variant at those depths (the
matrix of tests/test_generate_depths.py), ``--recipes`` every reference recipe (``generate --base NAME``).
The generated files go to a temporary folder that is removed at the end, whatever happens, unless
``--keep DIR`` names a folder to keep them in.

Exit codes: 0 every smoke test passed; 1 at least one failed (or a file could not be generated or
loaded); 2 the device is not available or an argument is wrong. Meant to be run on a GPU machine as well
as on a laptop CPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.generate import Generated, generate
from advisor.plan import Plan
from advisor.recommend import recommend
from advisor.smoke import resolve_device, run_smoke
from advisor.spec import Spec

# name -> (spec, --mc-dropout): one per template and per option that changes the generated code's shape.
CASES: dict[str, tuple[Spec, bool | None]] = {
    "mlp": (Spec(arch="mlp"), None),
    "mlp_batchnorm": (Spec(arch="mlp", batch_norm=True, layers=3), None),
    "mlp_mc_dropout": (Spec(arch="mlp", uncertainty=True), None),
    "selu_mlp": (Spec(arch="mlp", activation="selu", layers=3), None),
    "cnn": (Spec(arch="cnn", layers=3), None),
    "cnn_batchnorm_gap": (Spec(arch="cnn", layers=2, batch_norm=True, head="gap"), None),
    "cnn_no_pooling": (Spec(arch="cnn", layers=2, pooling="none"), None),
    "cnn_avgpool_no_fc": (Spec(arch="cnn", layers=2, pooling="avg", fc_layers=0), None),
    "resnet_head_dropout": (Spec(arch="resnet", layers=4, overfitting="strong"), None),
    "resnet_drop_path": (Spec(arch="resnet", layers=12), None),
    "wrn": (Spec(arch="resnet", wide=True, layers=4), None),
    "wrn_mc_dropout": (Spec(arch="resnet", wide=True, layers=2), True),
    "lstm_lm": (Spec(arch="rnn", layers=2, width=650), None),
    "gru_lm_one_layer": (Spec(arch="rnn", cell="gru", layers=1), None),
    "lstm_classifier_bidirectional": (Spec(arch="rnn", rnn_task="classifier", bidirectional=True), None),
    "lstm_classifier_features": (Spec(arch="rnn", rnn_task="classifier", embeddings=False), None),
    "lstm_tagger": (Spec(arch="rnn", embeddings=False, layers=1), None),
    "transformer_encoder": (Spec(arch="transformer", layers=2), None),
    "transformer_encoder_post_norm": (Spec(arch="transformer", layers=2, norm="post"), None),
    "transformer_decoder": (Spec(arch="transformer", transformer="decoder", layers=2), None),
    "transformer_decoder_post_norm": (Spec(arch="transformer", transformer="decoder", norm="post", layers=2), None),
    "vit_drop_path": (Spec(arch="transformer", modality="image", layers=2), None),
    "transformer_no_dropout": (
        Spec(arch="transformer", transformer="decoder", layers=2, regime="pretraining", params=7_000_000_000),
        None,
    ),
    "gcn": (Spec(arch="gnn"), None),
    "gat": (Spec(arch="gnn", gnn="gat"), None),
    "gat_mc_dropout": (Spec(arch="gnn", gnn="gat", layers=3, width=64), True),
}

# Every family and variant, for --depths (the same list as tests/test_generate_depths.py).
VARIANTS: dict[str, dict[str, object]] = {
    "mlp": {"arch": "mlp"},
    "mlp_batchnorm": {"arch": "mlp", "batch_norm": True},
    "selu_mlp": {"arch": "mlp", "activation": "selu"},
    **{
        f"cnn_{head}_{pooling}{'_batchnorm' if bn else ''}": {
            "arch": "cnn",
            "head": head,
            "pooling": pooling,
            "batch_norm": bn,
        }
        for head in ("fc", "gap")
        for pooling in ("max", "avg", "none")
        for bn in (False, True)
    },
    "resnet": {"arch": "resnet"},
    "wrn": {"arch": "resnet", "wide": True},
    "rnn_lm": {"arch": "rnn"},
    "rnn_classifier": {"arch": "rnn", "rnn_task": "classifier"},
    "rnn_tagger": {"arch": "rnn", "embeddings": False},
    **{
        f"transformer_{kind}_{norm}": {
            "arch": "transformer",
            "transformer": "encoder" if kind == "vit" else kind,
            "norm": norm,
            **({"modality": "image"} if kind == "vit" else {}),
        }
        for kind in ("encoder", "decoder", "vit")
        for norm in ("pre", "post")
    },
    "transformer_decoder_rotary": {"arch": "transformer", "transformer": "decoder", "positions": "rotary"},
    "transformer_encoder_bert": {"arch": "transformer", "norm": "post", "embedding_norm": True},
    "gcn": {"arch": "gnn"},
    "gat": {"arch": "gnn", "gnn": "gat"},
}


def _awd_lstm() -> Plan:
    """The AWD-LSTM variant (locked dropout, weight drop) exists only as an edited plan."""
    plan = recommend(Spec(arch="rnn", layers=2, width=400))
    sites = []
    for site in plan.sites:
        if site.kind == "dropout":
            p = 0.3 if site.after == "rnn-layer" and site.before == "rnn-layer" else 0.4
            site = site.model_copy(update={"kind": "locked-dropout", "module": "LockedDropout", "p": p})
        sites.append(site)
        if site.before == "rnn-layer":
            sites.append(site.model_copy(update={"kind": "weight-drop", "module": "WeightDrop", "p": 0.5}))
    sites = [s.model_copy(update={"id": f"S{i + 1}"}) for i, s in enumerate(sites)]
    return plan.model_copy(update={"sites": sites})


def _depths(text: str | None) -> list[int] | None:
    """'1,2,5' -> [1, 2, 5]; None when the text is not a list of positive integers."""
    if not text:
        return []
    try:
        depths = [int(d) for d in text.split(",")]
    except ValueError:
        return None
    return depths if all(d >= 1 for d in depths) else None


def _jobs(depths: list[int], recipes: bool = False) -> list[tuple[str, Generated]]:
    jobs = [(n, generate(recommend(s), s, mc_dropout=mc, output=f"{n}.py")) for n, (s, mc) in CASES.items()]
    jobs.append(("awd_lstm", generate(_awd_lstm(), output="awd_lstm.py")))
    if recipes:
        from advisor.knowledge import default_kb
        from advisor.spec import build_spec

        kb = default_kb()
        for key in sorted(kb.recipes):
            if kb.recipe(key).spec.get("transformer") == "encoder-decoder":
                continue  # no template (generate says so)
            spec = build_spec({"base": key, **kb.recipe(key).spec})
            name = "recipe_" + key.replace("-", "_").replace(".", "_")
            jobs.append((name, generate(recommend(spec), spec, output=f"{name}.py")))
    for variant, values in VARIANTS.items():
        for depth in depths:
            spec = Spec(layers=depth, **values)  # type: ignore[arg-type]
            name = f"{variant}_{depth}"
            jobs.append((name, generate(recommend(spec), spec, output=f"{name}.py")))
    return jobs


def _run(jobs: list[tuple[str, Generated]], folder: Path, device: str, steps: int | None) -> int:
    failed = 0
    start = time.perf_counter()
    for job, result in jobs:
        path = folder / f"{job}.py"
        path.write_text(result.code, encoding="utf-8")
        try:
            r = run_smoke(path, device=device, steps=steps)
        except AdvisorError as exc:
            print(f"{job:32s} ERROR  {exc.message}", flush=True)
            failed += 1
            continue
        if r.ok:
            print(
                f"{job:32s} ok     {r.device:6s} {r.steps:3d} steps {r.step_ms:8.2f} ms/step  "
                f"loss {r.start_loss:.3f} -> {r.end_loss:.3f}  sites {r.dropout_sites:3d}  ({result.template})",
                flush=True,
            )
        else:
            failed += 1
            print(f"{job:32s} FAILED {r.device:6s} {r.message}", flush=True)
    print(f"{len(jobs) - failed}/{len(jobs)} passed in {time.perf_counter() - start:.1f} s")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None, help="at most this many steps (default: each file's)")
    parser.add_argument("--depths", default=None, help="also every variant at these depths, e.g. 1,2,5,8,12")
    parser.add_argument("--recipes", action="store_true", help="also every reference recipe a template can write")
    parser.add_argument("--keep", type=Path, default=None, help="write the generated files here and keep them")
    args = parser.parse_args()

    try:
        device = resolve_device(args.device)
    except AdvisorError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    depths = _depths(args.depths)
    if depths is None:
        print(f"error: --depths '{args.depths}' is not a list of positive integers", file=sys.stderr)
        print("hint: e.g. --depths 1,2,5,8,12", file=sys.stderr)
        return 2
    import torch

    name = device
    if device.startswith("cuda"):
        name += f" ({torch.cuda.get_device_name(torch.device(device))})"
    print(f"device {name}; torch {torch.__version__}; python {platform.python_version()}")

    jobs = _jobs(depths, recipes=args.recipes)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        failed = _run(jobs, args.keep, device, args.steps)
        print(f"files kept in {args.keep}")
    else:
        with tempfile.TemporaryDirectory(prefix="dropout-advisor-smoke-") as tmp:
            failed = _run(jobs, Path(tmp), device, args.steps)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
