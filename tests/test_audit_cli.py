"""`dropout-advisor audit` through CliRunner: every exit code, every bad input, stdout and stderr apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.audit import load
from advisor.cli import app

MODELS = Path(__file__).parent / "audit_models"


def target(file: str, name: str) -> str:
    return f"{MODELS / file}:{name}"


def audit(runner, *args: str):
    return runner.invoke(app, ["audit", *args])


def assert_usage_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "\nhint: " in result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# ---- exit codes ---------------------------------------------------------------------------------


def test_clean_model_exits_0(runner):
    result = audit(runner, target("clean.py", "Net"), "--input-shape", "2,3,16,16")
    assert result.exit_code == 0, result.stderr
    assert "S1  dropout  nn.Dropout" in result.stdout
    assert "No findings." in result.stdout
    assert result.stderr == ""


def test_findings_at_warning_exit_1_and_are_listed_after_the_sites(runner):
    result = audit(runner, target("buggy.py", "Net"), "-s", "4,16")
    assert result.exit_code == 1
    out = result.stdout
    assert out.index("Dropout sites") < out.index("Findings (4):")
    for slug in ("functional-dropout-ignores-eval", "dropout-before-batchnorm", "dropout-after-output"):
        assert slug in out
    assert "dropout-never-called  unused" in out
    assert result.stderr == ""


def test_exit_zero_reports_but_exits_0(runner):
    result = audit(runner, target("buggy.py", "Net"), "-s", "4,16", "--exit-zero")
    assert result.exit_code == 0
    assert "1 error(s), 3 warning(s)" in result.stdout


@pytest.mark.parametrize(
    ("name", "fail_on", "code"),
    [
        ("OnlyWarning", None, 1),
        ("OnlyWarning", "error", 0),
        ("OnlyInfo", None, 0),
        ("OnlyInfo", "info", 1),
        ("Net", "error", 1),
    ],
)
def test_fail_on_threshold(runner, name, fail_on, code):
    shape = {"OnlyWarning": "2,5,8", "OnlyInfo": "2,3,8,8", "Net": "4,16"}[name]
    args = [target("buggy.py", name), "-s", shape] + (["--fail-on", fail_on] if fail_on else [])
    assert audit(runner, *args).exit_code == code


def test_intentional_dropout_is_flagged_until_allowed_on_the_command_line(runner):
    t = target("tacotron.py", "Decoder")
    flagged = audit(runner, t, "-s", "4,16")
    assert flagged.exit_code == 1 and "functional-dropout-ignores-eval  prenet" in flagged.stdout
    allowed = audit(runner, t, "-s", "4,16", "--allow", "prenet.*:functional-dropout-ignores-eval")
    assert allowed.exit_code == 0, allowed.stdout
    assert "Allowed (1):" in allowed.stdout and "No findings." in allowed.stdout


def test_intentional_dropout_allowed_from_the_users_pyproject(runner, tmp_path):
    (tmp_path / "tts.py").write_text((MODELS / "tacotron.py").read_text())
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dropout-advisor]\nallow = ["prenet.*:functional-dropout-ignores-eval"]\n'
    )
    result = audit(runner, f"{tmp_path / 'tts.py'}:Decoder", "-s", "4,16")
    assert result.exit_code == 0, result.stdout
    assert "(allowed by prenet.*:functional-dropout-ignores-eval)" in result.stdout


def test_fail_on_from_pyproject_and_explicit_config(runner, tmp_path):
    conf = tmp_path / "audit.toml"
    conf.write_text('[tool.dropout-advisor]\nfail-on = "error"\n')
    result = audit(runner, target("buggy.py", "OnlyWarning"), "-s", "2,5,8", "--config", str(conf))
    assert result.exit_code == 0


# ---- formats ------------------------------------------------------------------------------------


def test_json_has_schema_version_sites_and_findings(runner):
    result = audit(runner, target("buggy.py", "Net"), "-s", "4,16", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert [s["module"] for s in data["sites"]] == ["drop", "", "unused"]
    assert {f["slug"] for f in data["findings"]} == {
        "functional-dropout-ignores-eval",
        "dropout-before-batchnorm",
        "dropout-after-output",
        "dropout-never-called",
    }
    first = data["findings"][0]
    for key in ("rule_id", "slug", "severity", "module", "message", "fix", "citations", "location"):
        assert key in first
    assert data["summary"] == {"error": 1, "warning": 3, "info": 0, "allowed": 0}


def test_sarif_is_structurally_valid_and_points_at_the_offending_line(runner):
    result = audit(runner, target("buggy.py", "Net"), "-s", "4,16", "--format", "sarif")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["version"] == "2.1.0" and "sarif-2.1.0" in doc["$schema"]
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "dropout-advisor"
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids)) == 4
    for rule in rules:
        assert rule["name"] and rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    class_line = next(
        i for i, line in enumerate((MODELS / "buggy.py").read_text().splitlines(), 1) if line.startswith("class Net")
    )
    call_line = next(
        i for i, line in enumerate((MODELS / "buggy.py").read_text().splitlines(), 1) if "return F.dropout(" in line
    )
    assert len(run["results"]) == 4
    for res in run["results"]:
        assert res["ruleId"] == ids[res["ruleIndex"]]
        assert res["level"] in ("error", "warning", "note")
        assert res["message"]["text"]
        phys = res["locations"][0]["physicalLocation"]
        assert phys["artifactLocation"]["uri"].endswith("buggy.py")
        # A functional call's own line; a module's class definition otherwise (as the text report shows).
        functional = res["properties"]["module"] == ""
        assert phys["region"]["startLine"] == (call_line if functional else class_line)


def test_sarif_relative_uris_resolve_against_srcroot(runner, monkeypatch):
    monkeypatch.chdir(MODELS.parent.parent)
    doc = json.loads(audit(runner, "tests/audit_models/buggy.py:Net", "-s", "4,16", "-f", "sarif").stdout)
    run = doc["runs"][0]
    loc = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "tests/audit_models/buggy.py", "uriBaseId": "%SRCROOT%"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")


def test_output_file_is_written_and_never_overwritten_without_force(runner, tmp_path):
    out = tmp_path / "audit.sarif"
    args = [target("clean.py", "Net"), "-s", "2,3,16,16", "-f", "sarif", "-o", str(out)]
    first = audit(runner, *args)
    assert first.exit_code == 0 and first.stdout == ""
    assert json.loads(out.read_text())["version"] == "2.1.0"
    assert f"{out}: created" in first.stderr
    out.write_text("{}")
    again = audit(runner, *args)
    assert_usage_error(again, "already exists", "--force")
    assert audit(runner, *args, "--force").exit_code == 0


# ---- devices ------------------------------------------------------------------------------------


def test_meta_device_skips_the_output_comparison_and_says_so(runner):
    result = audit(
        runner, target("lm.py", "TinyLM"), "-s", "2,12", "--input-dtype", "long", "--device", "meta", "-f", "json"
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["device"] == "meta"
    assert data["checks"]["eval_determinism"].startswith("skipped: the model is on the meta")


def test_auto_falls_back_to_cpu_when_meta_cannot_run_and_says_so(runner, monkeypatch):
    monkeypatch.setattr(load, "AUTO_CPU_BYTES", 0)  # treat the toy as a large model: meta first
    result = audit(runner, target("meta_hostile.py", "Gated"), "-s", "2,8", "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"] == "cpu"
    assert any("could not run on the meta device" in n for n in data["notes"])
    assert "note: the model could not run on the meta device" in result.stderr


def test_meta_only_fails_with_a_hint_when_the_model_needs_values(runner):
    result = audit(runner, target("meta_hostile.py", "Gated"), "-s", "2,8", "--device", "meta")
    assert_usage_error(result, "Tensor.item() cannot be called on meta tensors", "meta_hostile.py:15", "--device cpu")


# ---- targets and constructors -------------------------------------------------------------------


def test_factory_with_kwargs(runner):
    result = audit(runner, target("clean.py", "build_model"), "-s", "2,16", "--kwargs", '{"width": 8}')
    assert result.exit_code == 0, result.stderr


def test_prebuilt_instance_is_audited_where_it_lives(runner):
    result = audit(runner, target("clean.py", "prebuilt"), "-s", "2,4")
    assert result.exit_code == 0 and "device: cpu" in result.stdout


def test_module_target_from_the_current_folder(runner, tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text((MODELS / "clean.py").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = audit(runner, "mypkg.models:build_model", "-s", "2,16", "--kwargs", '{"width": 4}')
    assert result.exit_code == 0, result.stderr


# ---- load and usage errors: one error line, one hint, no traceback, exit 2 -----------------------


def test_target_without_a_name(runner):
    assert_usage_error(
        audit(runner, str(MODELS / "clean.py"), "-s", "2,16"), "is not FILE.py:NAME or package.module:NAME"
    )


def test_missing_file(runner, tmp_path):
    assert_usage_error(audit(runner, f"{tmp_path / 'nope.py'}:Net", "-s", "2,16"), "no such file")


def test_missing_module(runner):
    assert_usage_error(audit(runner, "no_such_pkg_xyz.models:Net", "-s", "2,16"), "no module named 'no_such_pkg_xyz'")


def test_import_error_shows_the_users_error_and_line(runner):
    result = audit(runner, target("broken_import.py", "Net"), "-s", "2,16")
    assert_usage_error(result, "KeyError: 'depth'", "broken_import.py:6", 'WIDTH = CONFIG["depth"]')
    assert "advisor/" not in result.stderr


def test_syntax_error_shows_file_and_line(runner, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch.nn as nn\n\nclass Net(nn.Module)\n    pass\n")
    assert_usage_error(audit(runner, f"{bad}:Net", "-s", "2,16"), "SyntaxError", "bad.py:3")


def test_unknown_name_suggests_a_close_one(runner):
    assert_usage_error(audit(runner, target("clean.py", "Nte"), "-s", "2,16"), "has no 'Nte'", "did you mean 'Net'?")


def test_constructor_that_needs_arguments_names_them(runner):
    result = audit(runner, target("clean.py", "build_model"), "-s", "2,16")
    assert_usage_error(result, "build_model() needs argument width", "--kwargs '{\"width\": ...}'")


def test_unknown_constructor_argument(runner):
    result = audit(runner, target("clean.py", "build_model"), "-s", "2,16", "--kwargs", '{"widht": 4}')
    assert_usage_error(result, "takes no argument 'widht'; did you mean 'width'?", "accepts: width, num_classes")


def test_constructor_error_shows_the_users_line(runner, tmp_path):
    f = tmp_path / "ctor.py"
    f.write_text(
        "import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4 // 0)\n"
    )
    assert_usage_error(audit(runner, f"{f}:Net", "-s", "2,4"), "ZeroDivisionError", "ctor.py:7")


@pytest.mark.parametrize("text", ["{width: 4}", "[1, 2]"])
def test_bad_kwargs_json(runner, text):
    assert_usage_error(audit(runner, target("clean.py", "build_model"), "-s", "2,16", "--kwargs", text), "--kwargs")


@pytest.mark.parametrize("shape", ["8,a", "8,-3", ""])
def test_bad_input_shape(runner, shape):
    assert_usage_error(audit(runner, target("clean.py", "Net"), "-s", shape), "--input-shape", "positive integers")


def test_missing_input_shape(runner):
    assert_usage_error(audit(runner, target("clean.py", "Net")), "needs an example input shape", "--input-shape")


def test_wrong_input_shape_names_the_shape_and_the_layer(runner):
    result = audit(runner, target("buggy.py", "Net"), "-s", "4,15")
    assert_usage_error(
        result, "float32[4, 15]", "layer 'fc1' (Linear, input (4, 15))", "mat1 and mat2", "last dimension of 16"
    )


def test_float_ids_for_an_embedding_suggest_input_dtype_long(runner):
    result = audit(runner, target("lm.py", "TinyLM"), "-s", "2,12")
    assert_usage_error(result, "layer 'embed' (Embedding", "--input-dtype long")


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ("prenet", "is not MODULE_GLOB:RULE"),
        ("prenet:functional-dropout", "did you mean 'functional-dropout-ignores-eval'"),
    ],
)
def test_bad_allow_entry(runner, entry, needle):
    assert_usage_error(audit(runner, target("clean.py", "Net"), "-s", "2,3,16,16", "--allow", entry), needle)


def test_bad_allow_entry_in_pyproject_names_the_file(runner, tmp_path):
    (tmp_path / "m.py").write_text((MODELS / "clean.py").read_text())
    (tmp_path / "pyproject.toml").write_text('[tool.dropout-advisor]\nallow = ["prenet:no-such-rule"]\n')
    assert_usage_error(audit(runner, f"{tmp_path / 'm.py'}:Net", "-s", "2,3,16,16"), "pyproject.toml", "no-such-rule")


def test_unknown_format_is_a_usage_error(runner):
    result = audit(runner, target("clean.py", "Net"), "-s", "2,3,16,16", "--format", "xml")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_kwargs_for_a_prebuilt_instance_is_a_usage_error(runner):
    assert_usage_error(
        audit(runner, target("clean.py", "prebuilt"), "-s", "2,4", "--kwargs", '{"a": 1}'), "already built"
    )


def test_loading_the_cli_does_not_import_torch():
    code = "import sys, advisor.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_prints_in_the_users_code_go_to_stderr_not_into_the_json(runner, tmp_path):
    f = tmp_path / "chatty.py"
    f.write_text(
        "import torch.nn as nn\n\nprint('importing')\n\n\nclass Net(nn.Sequential):\n"
        "    def __init__(self):\n        print('building')\n        super().__init__(nn.Linear(4, 2))\n"
    )
    result = audit(runner, f"{f}:Net", "-s", "2,4", "-f", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["model_class"] == "Net"
    assert "importing" in result.stderr and "building" in result.stderr


def test_a_rate_torch_refuses_to_build_is_reported_as_a_finding(runner, tmp_path):
    f = tmp_path / "rate.py"
    f.write_text("import torch.nn as nn\n\n\ndef net():\n    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(1.5))\n")
    result = audit(runner, f"{f}:net", "-s", "2,4")
    assert result.exit_code == 1, result.stderr
    assert "rate-out-of-range" in result.stdout and "1.5" in result.stdout


# ---- v0.2: inputs too large, dtype hints, half-meta models, frozen graphs, third-party code ----------


def test_an_input_too_large_to_allocate_is_refused_before_anything_is_built(runner):
    result = audit(runner, target("clean.py", "Net"), "-s", "100000,100000,100000")
    assert_usage_error(result, "100000,100000,100000", "GiB", "small input")


def test_activations_too_large_are_refused_from_a_meta_estimate(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_ACTIVATION_BYTES", 2**20)
    result = audit(runner, target("clean.py", "Net"), "-s", "64,3,64,64")
    assert_usage_error(result, "of activations", "--device meta")


def test_long_input_to_a_conv_model_hints_at_the_dtype_not_the_shape(runner):
    result = audit(runner, target("clean.py", "Net"), "-s", "2,3,16,16", "--input-dtype", "long")
    assert_usage_error(result, "Conv2d", "floating-point", "--input-dtype float")
    assert "adjust --input-shape" not in result.stderr


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


HALF_META = """
import torch
import torch.nn as nn

class MaskEmbedNet(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.mask_emb = nn.Parameter(torch.Tensor(d).uniform_())  # ignores torch.device('meta')
        self.fc, self.drop = nn.Linear(d, d), nn.Dropout(0.1)

    def forward(self, x):
        return self.fc(self.drop(x + self.mask_emb))
"""


def test_a_half_meta_model_falls_back_to_the_cpu_under_auto(runner, tmp_path):
    result = audit(runner, _write(tmp_path, "m.py", HALF_META) + ":MaskEmbedNet", "-s", "2,8")
    assert result.exit_code == 0, result.stderr
    assert "device: cpu" in result.stdout and "legacy torch.Tensor(n)" in result.stdout


def test_a_half_meta_model_is_moved_to_meta_under_device_meta(runner, tmp_path):
    result = audit(runner, _write(tmp_path, "m.py", HALF_META) + ":MaskEmbedNet", "-s", "2,8", "--device", "meta")
    assert result.exit_code == 0, result.stderr
    assert "device: meta" in result.stdout and "moved to meta" in result.stdout


EXPORTED = """
import torch
import torch.nn as nn

class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.drop, self.out = nn.Linear(16, 16), nn.Dropout(0.5), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.fc(x))))

def exported_in_train_mode():
    return torch.export.export(Head().train(), (torch.randn(4, 16),)).module()

def exported_in_eval_mode():
    return torch.export.export(Head().eval(), (torch.randn(4, 16),)).module()
"""


def test_an_exported_program_in_train_mode_is_a_finding_not_a_traceback(runner, tmp_path):
    file = _write(tmp_path, "exp.py", EXPORTED)
    result = audit(runner, f"{file}:exported_in_train_mode", "-s", "4,16")
    assert result.exit_code == 1, result.stderr
    assert "error   DRP314 frozen-graph-dropout" in result.stdout
    assert f"[{file}" in result.stdout or "exp.py:" in result.stdout  # points at the user's factory
    assert "Traceback" not in result.stderr + result.stdout


def test_an_exported_program_in_eval_mode_has_no_finding(runner, tmp_path):
    file = _write(tmp_path, "exp.py", EXPORTED)
    result = audit(runner, f"{file}:exported_in_eval_mode", "-s", "4,16")
    assert result.exit_code == 0, result.stderr
    assert "No findings." in result.stdout and "cannot be switched" in result.stdout


THIRD_PARTY = """
import torch.nn as nn

class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop, self.fc = nn.Dropout(0.2), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x)
"""


def test_include_third_party_flag_restores_the_severity(runner, tmp_path, monkeypatch):
    pkg = tmp_path / "site-packages" / "fakelib_cli"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    model = _write(
        tmp_path,
        "user.py",
        "import torch.nn as nn\nfrom fakelib_cli import Head\n\ndef build():\n    return nn.Sequential(Head())\n",
    )
    quiet = audit(runner, f"{model}:build", "-s", "4,16")
    assert quiet.exit_code == 0 and "info    DRP307" in quiet.stdout and "fakelib_cli" in quiet.stdout
    loud = audit(runner, f"{model}:build", "-s", "4,16", "--include-third-party")
    assert loud.exit_code == 1 and "warning DRP307" in loud.stdout


def test_an_error_in_the_models_code_is_not_blamed_on_the_input(runner, tmp_path):
    file = _write(
        tmp_path,
        "bad.py",
        "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n"
        "        raise RuntimeError('the cache was not initialised')\n",
    )
    result = audit(runner, f"{file}:Net", "-s", "2,4")
    assert_usage_error(result, "the cache was not initialised", "model's code")
    assert "--input-shape" not in result.stderr.split("hint:")[1]


@pytest.mark.parametrize(
    ("text", "shape"),
    [("8,3,32,32", (8, 3, 32, 32)), ("8x3x32x32", (8, 3, 32, 32)), ("(8, 16)", (8, 16)), ("(8,)", (8,))],
)
def test_input_shape_forms_parse_to_the_same_sizes(text, shape):
    assert load.parse_shape(text) == shape


@pytest.mark.parametrize("text", ["8,x", "8,16,x", "8,,16", "x8", "8,16.5", "", ",", "8,0", "8,-1", "８,16"])
def test_input_shape_with_a_bad_size_is_refused_not_truncated(text):
    with pytest.raises(load.UsageError, match="not a list of positive integers"):
        load.parse_shape(text)


@pytest.mark.parametrize("given", [1, 3])
def test_a_forward_given_the_wrong_number_of_inputs_is_told_so(runner, tmp_path, given):
    path = tmp_path / "two.py"
    path.write_text(
        "import torch.nn as nn\n\n\nclass Two(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)\n\n    def forward(self, x, y):\n"
        "        return self.a(x) + self.b(y)\n",
        encoding="utf-8",
    )
    shapes = [arg for _ in range(given) for arg in ("-s", "2,4")]
    result = runner.invoke(app, ["audit", f"{path}:Two", *shapes])
    assert result.exit_code == 2
    assert "hint: the model's forward takes another number of inputs than was given" in result.stderr
    assert "not from the input's shape" not in result.stderr
