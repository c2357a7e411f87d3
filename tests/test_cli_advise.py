"""`recommend` and `ask`: flags, answers files, the scripted interview, and questions in words."""

from __future__ import annotations

import json

import pytest

from advisor.cli import app

CNN_SCRIPT = (
    "\n".join(
        [
            "cnnn",  # wrong: re-asked with a suggestion
            "cnn",
            "scratch",
            "4",
            "back",  # revise the number of layers
            "3",
            "",  # width: default
            "no",  # batch norm
            "relu",
            "max",
            "fc",
            "2",
            "50k",
            "",  # params: unknown
            "strong",
            "no",  # uncertainty
            "n",  # do not save
        ]
    )
    + "\n"
)


def test_recommend_json_plan_shape(runner):
    result = runner.invoke(app, ["recommend", "--arch", "cnn", "--layers", "3", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["schema_version"] == 1
    site = plan["sites"][0]
    for key in ("after", "before", "kind", "module", "p", "p_range", "recommendations", "citations"):
        assert key in site
    assert plan["avoid"] and plan["notes"]


def test_recommend_text_shows_stack_with_sites(runner):
    result = runner.invoke(app, ["recommend", "--arch", "mlp", "--layers", "2"])
    assert result.exit_code == 0
    assert ">> nn.Dropout  p=0.5" in result.stdout
    assert result.stdout.index("Linear(→512)  hidden 1") < result.stdout.index(">> nn.Dropout  p=0.5")


def test_recommend_markdown(runner):
    result = runner.invoke(app, ["recommend", "--arch", "rnn", "-f", "markdown"])
    assert result.stdout.startswith("# Dropout plan for a rnn")
    assert "## Do not put dropout here" in result.stdout


def test_recommend_without_arch_names_what_is_missing(runner):
    result = runner.invoke(app, ["recommend", "--layers", "3"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: recommend: no answer for: arch")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "cnm"], "field 'arch': Input should be"),
        (["--arch", "cnn", "--layers", "0"], "field 'layers': Input should be greater than or equal to 1"),
        (["--arch", "cnn", "--samples", "-5"], "--samples:"),
        (["--arch", "mlp", "--samples", "lots"], "--samples: 'lots' is not a count"),
        (["--arch", "mlp", "--overfitting", "strong", "--underfitting"], "cannot both underfit and overfit"),
    ],
)
def test_recommend_bad_flags(runner, args, message):
    result = runner.invoke(app, ["recommend", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error:") and "\nhint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_counts_accept_suffixes(runner):
    result = runner.invoke(app, ["recommend", "--arch", "mlp", "--samples", "1.2M", "--params", "7B", "-f", "json"])
    spec = json.loads(result.stdout)["spec"]
    assert spec["samples"] == 1_200_000 and spec["params"] == 7_000_000_000


def test_answers_file_replays_and_flags_override(runner, tmp_path):
    answers = tmp_path / "net.toml"
    answers.write_text('answers_version = 1\narch = "cnn"\nlayers = 4\noverfitting = "strong"\n')
    from_file = json.loads(runner.invoke(app, ["recommend", "--answers", str(answers), "-f", "json"]).stdout)
    assert from_file["spec"]["layers"] == 4
    overridden = json.loads(
        runner.invoke(app, ["recommend", "--answers", str(answers), "--layers", "2", "-f", "json"]).stdout
    )
    assert overridden["spec"]["layers"] == 2


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('arch = "cnn"\nlayers = [', ".toml", "not valid TOML"),
        ('arch = "cnn"\nlayres = 3\n', ".toml", "field 'layres': unknown field; did you mean 'layers'?"),
        ('arch = "cnn"\nlayers = "three"\n', ".toml", "field 'layers': Input should be a valid integer"),
        ('arch = "cnn"\nsamples = -10\n', ".toml", "field 'samples': Input should be greater than or equal to 1"),
        ('{"arch": "mlp", "width": -1}', ".json", "field 'width'"),
        ("[1, 2]", ".json", "the top level must be a table"),
        ('answers_version = 9\narch = "cnn"\n', ".toml", "unsupported version"),
    ],
)
def test_malformed_answers_files(runner, tmp_path, content, suffix, message):
    path = tmp_path / f"answers{suffix}"
    path.write_text(content)
    result = runner.invoke(app, ["recommend", "--answers", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_answers_file(runner, tmp_path):
    result = runner.invoke(app, ["recommend", "--answers", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_save_answers_and_replay_gives_the_same_plan(runner, tmp_path):
    path = tmp_path / "a.toml"
    args = ["recommend", "--arch", "rnn", "--layers", "3", "--cell", "gru", "--no-embeddings", "-f", "json"]
    first = runner.invoke(app, [*args, "--save-answers", str(path)])
    assert first.exit_code == 0 and path.exists()
    replay = runner.invoke(app, ["recommend", "--answers", str(path), "-f", "json"])
    assert json.loads(replay.stdout) == json.loads(first.stdout)
    again = runner.invoke(app, [*args, "--save-answers", str(path)])
    assert again.exit_code == 0  # identical content: nothing to overwrite
    path.write_text("# mine\n")
    clash = runner.invoke(app, [*args, "--save-answers", str(path)])
    assert clash.exit_code == 2 and path.read_text() == "# mine\n"


# ---- the interview ----


def test_scripted_interview_reasks_goes_back_and_shows_plan(runner):
    result = runner.invoke(app, ["ask"], input=CNN_SCRIPT)
    assert result.exit_code == 0, result.stderr
    assert "did you mean 'cnn'?" in result.stderr
    assert "Dropout plan: cnn, 3 layers" in result.stdout  # 'back' replaced the 4
    assert "dropout-advisor recommend --arch cnn --layers 3" in result.stderr
    assert "--overfitting strong" in result.stderr


def test_interview_skips_questions_answered_by_flags(runner):
    result = runner.invoke(app, ["ask", "--arch", "gnn", "--gnn", "gat"], input="\n" * 20)
    assert result.exit_code == 0
    assert "GCN or GAT?" not in result.stderr
    assert "Which family" not in result.stderr
    assert "GAT layer 1" in result.stdout


def test_interview_without_input_exits_2_naming_what_is_missing(runner):
    result = runner.invoke(app, ["ask"], input="")
    assert result.exit_code == 2
    assert "missing arch" in result.stderr.splitlines()[-2]
    assert result.stderr.splitlines()[-1].startswith("hint:")


def test_interview_input_ending_after_family_uses_defaults(runner):
    result = runner.invoke(app, ["ask"], input="mlp\n")
    assert result.exit_code == 0
    assert "remaining questions take their defaults" in result.stderr
    assert "Dropout plan: mlp, 2 layers" in result.stdout


def test_interview_ctrl_c_exits_130_without_traceback(runner, monkeypatch):
    import rich.prompt

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rich.prompt.Prompt, "ask", classmethod(lambda cls, *a, **k: interrupt()))
    result = runner.invoke(app, ["ask"])
    assert result.exit_code == 130
    assert result.stderr.startswith("error: interrupted")
    assert "Traceback" not in result.stderr


def test_interview_saves_answers_on_request(runner, tmp_path):
    path = tmp_path / "saved.toml"
    script = "mlp\n" + "\n" * 9 + "y\n" + f"{path}\n"
    result = runner.invoke(app, ["ask"], input=script)
    assert result.exit_code == 0, result.stderr
    assert path.exists() and 'arch = "mlp"' in path.read_text()


# ---- questions in words ----


@pytest.mark.parametrize(
    ("question", "expected", "top"),
    [
        # The Cross Validated thread this project began from, and its follow-up questions.
        ("Where should I place dropout layers in a neural network?", {"DRP001", "DRP004", "DRP012", "DRP101"}, 99),
        ("should dropout go before or after max pooling?", {"DRP006"}, 1),
        ("Should the 2D dropout go right after the conv+ReLU, after max-pooling, or both?", {"DRP006"}, 2),
        ("Is dropout used on the convolutional layers or only on the fully connected ones?", {"DRP004"}, 3),
        ("Where is dropout placed in the original transformer?", {"DRP017", "DRP016"}, 5),
        ("dropout before or after batch normalization", {"DRP101"}, 2),
        ("how to use dropout in an LSTM", {"DRP012"}, 2),
        ("dropout for LLM pretraining", {"DRP022"}, 1),
        ("my keep_prob is 0.8, what p do I pass to nn.Dropout?", {"DRP203"}, 2),
    ],
)
def test_questions_get_relevant_recommendations(runner, question, expected, top):
    result = runner.invoke(app, ["ask", question, "--format", "json"])
    assert result.exit_code == 0
    ids = [r["id"] for r in json.loads(result.stdout)["recommendations"]]
    assert expected <= set(ids[:top]), ids


def test_question_answer_cites_and_records_contested(runner):
    result = runner.invoke(app, ["ask", "before or after max pooling", "-f", "markdown"])
    assert "**contested**" in result.stdout
    assert "[cv240305" in result.stdout


def test_seed_thread_claim_is_recorded_with_correction(kb):
    cit = kb.citation("cv240305")
    hinton = [f for f in cit.findings if "Hinton" in f.where or "Hinton" in (f.quote or "")]
    assert hinton and any(
        "incomplete" in (f.note or "").lower() or "partly wrong" in (f.note or "").lower() for f in hinton
    )


def test_interview_ends_by_generating_code_on_request(runner, tmp_path):
    path = tmp_path / "model.py"
    script = "mlp\n" + "\n" * 9 + "n\n" + "y\n" + f"{path}\n"
    result = runner.invoke(app, ["ask"], input=script)
    assert result.exit_code == 0, result.stderr
    code = path.read_text()
    compile(code, str(path), "exec")
    assert "nn.Dropout" in code and "DRP001" in code


def test_interview_never_overwrites_without_a_yes(runner, tmp_path):
    path = tmp_path / "model.py"
    path.write_text("# my model\n")
    other = tmp_path / "other.py"
    script = "mlp\n" + "\n" * 9 + "n\n" + "y\n" + f"{path}\n" + "n\n" + f"{other}\n"
    result = runner.invoke(app, ["ask"], input=script)
    assert result.exit_code == 0, result.stderr
    assert path.read_text() == "# my model\n"
    assert other.exists()


def test_resnet_without_batchnorm_is_a_layernorm_residual_cnn(runner):
    result = runner.invoke(app, ["recommend", "--arch", "resnet", "--no-batch-norm"])
    assert result.exit_code == 0, result.stderr
    assert "BatchNorm" not in result.stdout.split("Sites")[0] and "LayerNorm" in result.stdout


def test_wide_resnet_without_batchnorm_is_refused(runner):
    result = runner.invoke(app, ["recommend", "--arch", "resnet", "--wide", "--no-batch-norm"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: flags: a Wide ResNet has BatchNorm") and "hint:" in result.stderr


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--arch", "rnn", "--wide"], "--wide"),
        (["--arch", "mlp", "--cell", "gru"], "--cell"),
        (["--arch", "cnn", "--transformer", "decoder"], "--transformer"),
        (["--arch", "transformer", "--gnn", "gat"], "--gnn"),
    ],
)
def test_a_flag_of_another_family_is_refused_not_ignored(runner, args, flag):
    result = runner.invoke(app, ["recommend", *args])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith(f"error: flags: {flag} applies to --arch")
        and lines[1].startswith("hint:")
    )
    assert "(answers)" not in result.stderr and "Value error" not in result.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--base", "gat", "--gnn", "gcn"], "gnn"),
        (["--base", "gpt2", "--regime", "fine-tuning", "--transformer", "encoder"], "transformer"),
        (["--base", "vit-b-16", "--modality", "text"], "modality"),
        (["--base", "bert-base", "--norm", "pre"], "norm"),
    ],
)
def test_flags_that_contradict_the_base_are_refused(runner, args, field):
    result = runner.invoke(app, ["recommend", *args])
    assert result.exit_code == 2 and result.stdout == ""
    assert f"has {field} = " in result.stderr and "hint: leave out" in result.stderr


def test_a_size_that_differs_from_the_base_is_said_in_the_plan(runner):
    result = runner.invoke(app, ["recommend", "--base", "zaremba-large", "--width", "200"])
    assert result.exit_code == 0, result.stderr
    assert "differs in size from" in result.stdout and "width 200 (the recipe's 1500)" in result.stdout


def test_an_empty_base_is_a_usage_error(runner):
    for args in (["--base", ""], ["--base", "  ", "--arch", "mlp"]):
        result = runner.invoke(app, ["recommend", *args])
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr.startswith("error: --base: an empty recipe name") and "hint:" in result.stderr


# ---- --base: a reference recipe ----


def test_base_fills_the_spec_and_every_site_names_recipe_fields_and_sources(runner):
    result = runner.invoke(app, ["recommend", "--base", "bert-base-uncased", "--regime", "fine-tuning", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["spec"]["arch"] == "transformer" and plan["spec"]["base"] == "bert-base"
    assert plan["sites"] and all(s["recipe"] == "bert-base" for s in plan["sites"])
    assert all(s["fields"] and s["evidence"] and "devlin2019" in s["citations"] for s in plan["sites"])


def test_unknown_base_exits_2_with_close_names(runner):
    result = runner.invoke(app, ["recommend", "--base", "bert-bse"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --base: no reference recipe named 'bert-bse'")
    assert "did you mean 'bert-base'" in result.stderr and "\nhint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_base_of_another_family_exits_2(runner):
    result = runner.invoke(app, ["recommend", "--arch", "cnn", "--base", "bert-base"])
    assert result.exit_code == 2
    assert "--base bert-base (BERT-base) has arch = 'transformer'" in result.stderr
    assert "hint: leave out --arch" in result.stderr


def test_base_in_an_answers_file(runner, tmp_path):
    path = tmp_path / "ft.toml"
    path.write_text('answers_version = 1\nbase = "bert-base"\nregime = "fine-tuning"\nsamples = 8000\n')
    result = runner.invoke(app, ["recommend", "--answers", str(path), "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert {s["p"] for s in json.loads(result.stdout)["sites"]} == {0.1}


def test_saved_answers_leave_the_recipe_fields_to_the_base(runner, tmp_path):
    path = tmp_path / "a.toml"
    args = ["recommend", "--base", "bert-base", "--regime", "fine-tuning", "--layers", "6"]
    result = runner.invoke(app, [*args, "--save-answers", str(path)])
    assert result.exit_code == 0, result.stderr
    saved = path.read_text()
    assert 'base = "bert-base"' in saved and "layers = 6" in saved
    assert "width" not in saved and "norm" not in saved  # the recipe gives them again on replay


def test_generate_takes_base(runner):
    result = runner.invoke(app, ["generate", "--base", "bert-base", "--regime", "fine-tuning", "-o", "-"])
    assert result.exit_code == 0, result.stderr
    assert "--base bert-base" in result.stdout and "nn.Dropout" in result.stdout


def test_a_plan_file_passed_as_answers_is_refused(runner, tmp_path):
    plan = runner.invoke(app, ["recommend", "--arch", "mlp", "-f", "json"]).stdout
    path = tmp_path / "plan.json"
    path.write_text(plan)
    result = runner.invoke(app, ["recommend", "--answers", str(path)])
    assert result.exit_code == 2
    assert "is a placement plan" in result.stderr
    assert f"generate --plan {path}" in result.stderr
    assert "no answer for" not in result.stderr


def test_interview_asks_for_the_base_when_fine_tuning(runner):
    script = "transformer\nfine-tuning\nbert-base-uncased\n8k\nmild\nno\nn\nn\n"
    result = runner.invoke(app, ["ask"], input=script)
    assert result.exit_code == 0, result.stderr
    assert "Which pretrained model are you fine-tuning?" in result.stderr
    choices = result.stderr.split("Which pretrained model are you fine-tuning?", 1)[1].split("[", 1)[1].split("]")[0]
    assert "bert-base" in choices.split("/") and choices.endswith("/none")  # the recipes of the family
    assert "resnet-50" not in choices.split("/")
    assert "How many layers" not in result.stderr  # the recipe answers the architecture questions
    command = result.stderr.split("The same plan without questions:", 1)[1].splitlines()[1].split()
    assert command[:2] == ["dropout-advisor", "recommend"] and "--arch" not in command and "--layers" not in command
    assert {"--base", "bert-base", "--regime", "fine-tuning", "--samples", "8000"} <= set(command)


def test_interview_rejects_an_unknown_base_and_asks_again(runner):
    script = "transformer\nfine-tuning\nbert-bse\nnone\n" + "\n" * 12
    result = runner.invoke(app, ["ask"], input=script)
    assert result.exit_code == 0, result.stderr
    assert "no recipe named 'bert-bse'" in result.stderr
    assert "keep the pretrained configuration" in result.stdout


def test_long_plans_show_each_group_of_sites_once(runner):
    result = runner.invoke(app, ["recommend", "--base", "bert-base", "--regime", "fine-tuning"])
    assert result.exit_code == 0
    out = result.stdout
    assert "Sites (38 in 5 groups):" in out
    assert out.count("attention_layer: dropout on the attention probabilities") == 1
    assert "12 places, blocks 1–12" in out


def test_markdown_plan_groups_sites_and_shows_schedules(runner):
    result = runner.invoke(app, ["recommend", "--arch", "mlp", "--underfitting", "-f", "markdown"])
    assert result.exit_code == 0
    assert "early dropout: this rate for the first part of training" in result.stdout
    assert "| S2, S3 |" in result.stdout  # both hidden-layer sites in one row (S1 is the input)


def test_base_plans_and_the_base_interview_never_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from advisor.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['recommend', '--base', 'bert-base', '--regime', 'fine-tuning']).exit_code == 0\n"
        "assert r.invoke(app, ['ask'], input='transformer\\nfine-tuning\\nbert-base\\n' + '\\n' * 8).exit_code == 0\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_samples_help_says_a_language_model_counts_tokens(runner):
    # review-advice.md kind 2: a language model's samples are tokens; the flag says so.
    result = runner.invoke(app, ["recommend", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "for a language model (--task lm, a Transformer decoder), tokens" in " ".join(result.stdout.split())
