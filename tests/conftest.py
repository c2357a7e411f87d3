from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from advisor.knowledge import KnowledgeBase, default_kb


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return default_kb()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small models gain nothing from intra-op threads, and on a busy machine their spin-waits cost a lot.

    Use it per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
