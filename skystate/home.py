"""Where skystate keeps its files (``SKYSTATE_HOME``, default ``~/.skystate``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    path = Path(os.environ.get("SKYSTATE_HOME", "~/.skystate")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_db_path() -> Path:
    return home() / "state.json"


def state_lock_path() -> Path:
    return home() / "state.lock"


def local_clusters_dir() -> Path:
    return home() / "local"


def config_path() -> Path:
    return home() / "config.yaml"
