"""``skystate init``: copy the quickstart example into a directory, never overwriting."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from skystate.exceptions import SkyStateError


def scaffold(directory: Path) -> list[Path]:
    template = resources.files("skystate") / "templates" / "quickstart"
    names = sorted(item.name for item in template.iterdir() if item.name.endswith(".yaml"))
    directory.mkdir(parents=True, exist_ok=True)
    existing = [directory / name for name in names if (directory / name).exists()]
    if existing:
        raise SkyStateError(
            f"{', '.join(str(p) for p in existing)} already exist(s); init never overwrites"
        )
    written = []
    for name in names:
        target = directory / name
        target.write_text((template / name).read_text())
        written.append(target)
    return written
