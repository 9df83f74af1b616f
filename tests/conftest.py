"""The fixture most tests share: a private ``SKYSTATE_HOME`` whose processes (API server,
workers, cluster agents) are all killed afterwards. Test files that need more (a config,
no token) define their own ``home``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import kill_everything_under


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SKYSTATE_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    kill_everything_under(tmp_path)
