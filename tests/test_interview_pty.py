"""The interview once through a real pseudo-terminal: a wrong answer re-asked, `back`, and Ctrl-C."""

from __future__ import annotations

import os
import sys

import pytest

pexpect = pytest.importorskip("pexpect")


def _spawn():
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", COLUMNS="200", PYTHONUNBUFFERED="1")
    return pexpect.spawn(sys.executable, ["-m", "advisor", "ask"], env=env, encoding="utf-8", timeout=90)


def test_wrong_answer_back_and_ctrl_c():
    child = _spawn()
    child.expect("Which family is the network")
    child.sendline("cnnn")
    child.expect("did you mean 'cnn'")
    child.expect("Which family is the network")
    child.sendline("cnn")
    child.expect("Training from scratch, fine-tuning")
    child.sendline("back")
    child.expect("Which family is the network")
    child.sendline("rnn")
    child.expect("Training from scratch, fine-tuning")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "error: interrupted" in child.before
    assert "Traceback" not in child.before


def test_full_interview_in_a_terminal_prints_plan():
    import io

    child = _spawn()
    seen = io.StringIO()
    child.logfile_read = seen
    child.expect("Which family is the network")
    child.sendline("gnn")
    # Accept every default, decline to save.
    for _ in range(12):
        index = child.expect(["Save these answers", r"\(default: [^)]*\)|Blank if unknown|\]"])
        if index == 0:
            child.sendline("n")
            break
        child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    text = seen.getvalue()
    assert "GraphConv" in text and "Dropout sites" in text
    assert "dropout-advisor recommend --arch gnn" in text
