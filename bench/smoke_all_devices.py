"""Generate every template (and each option that changes its shape) and run each smoke test on one device.

    python bench/smoke_all_devices.py [--device auto|cpu|cuda|mps|xpu] [--steps 60] [--keep DIR]

Prints one line per generated file: the outcome, steps, time per step, the eval loss before and after, and
the number of dropout sites. Exit 1 when any smoke test fails, 2 when the device is not available. Meant to
be run on a GPU machine (issue 4 asks for every template's smoke test on CUDA) as well as on a laptop CPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.generate import generate
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


def _awd_lstm() -> object:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--keep", type=Path, default=None, help="write the generated files here and keep them")
    args = parser.parse_args()

    try:
        device = resolve_device(args.device)
    except AdvisorError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    import torch

    name = device
    if device.startswith("cuda"):
        name += f" ({torch.cuda.get_device_name(torch.device(device))})"
    print(f"device {name}; torch {torch.__version__}; python {platform.python_version()}")

    folder = args.keep or Path(tempfile.mkdtemp(prefix="dropout-advisor-smoke-"))
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(n, generate(recommend(s), s, mc_dropout=mc, output=f"{n}.py")) for n, (s, mc) in CASES.items()]
    jobs.append(("awd_lstm", generate(_awd_lstm(), output="awd_lstm.py")))  # type: ignore[arg-type]

    failed = 0
    start = time.perf_counter()
    for job, result in jobs:
        path = folder / f"{job}.py"
        path.write_text(result.code, encoding="utf-8")
        try:
            r = run_smoke(path, device=device, steps=args.steps)
        except AdvisorError as exc:
            print(f"{job:32s} ERROR  {exc.message}")
            failed += 1
            continue
        if r.ok:
            print(
                f"{job:32s} ok     {r.device:6s} {r.steps:3d} steps {r.step_ms:8.2f} ms/step  "
                f"loss {r.start_loss:.3f} -> {r.end_loss:.3f}  sites {r.dropout_sites:3d}  ({result.template})"
            )
        else:
            failed += 1
            print(f"{job:32s} FAILED {r.device:6s} {r.message}")
    print(f"{len(jobs) - failed}/{len(jobs)} passed in {time.perf_counter() - start:.1f} s; files in {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
