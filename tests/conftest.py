from __future__ import annotations

import pytest
from typer.testing import CliRunner

from advisor.knowledge import KnowledgeBase, default_kb


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return default_kb()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
