"""``skystate init``: copy the quickstart example into a directory, never overwriting.

The copy is renamed for its directory (Project ``<dir>``, Cluster ``<dir>-dev``), so a
scaffolded directory and ``examples/quickstart`` never own, prune or share each other's
clusters and jobs (cluster names are global to a ``$SKYSTATE_HOME``; owners prune).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from skystate.exceptions import SkyStateError

TEMPLATE_NAME = "quickstart"  # the example's Project and Cluster name


def scaffold_names(directory: Path) -> tuple[str, str]:
    """(project, cluster) names for a directory: never the quickstart's own."""
    from skystate.spec.loader import owner_from_dir

    project = owner_from_dir(directory)
    if project in (TEMPLATE_NAME, "default"):
        project = f"my-{project}"
    return project, f"{project[:59].rstrip('-')}-dev"


def scaffold(directory: Path) -> list[Path]:
    template = resources.files("skystate") / "templates" / "quickstart"
    names = sorted(item.name for item in template.iterdir() if item.name.endswith(".yaml"))
    directory.mkdir(parents=True, exist_ok=True)
    existing = [directory / name for name in names if (directory / name).exists()]
    if existing:
        raise SkyStateError(
            f"{', '.join(str(p) for p in existing)} already exist(s); init never overwrites"
        )
    project, cluster = scaffold_names(directory)
    written = []
    for name in names:
        target = directory / name
        target.write_text(renamed((template / name).read_text(), project, cluster))
        written.append(target)
    return written


def renamed(text: str, project: str, cluster: str) -> str:
    """The template with its Project and Cluster names (and references) replaced."""
    is_project = re.search(r"^kind: Project\b", text, re.M) is not None
    text = re.sub(rf"^name: {TEMPLATE_NAME}\b", f"name: {project if is_project else cluster}",
                  text, flags=re.M)
    return re.sub(rf"^cluster: {TEMPLATE_NAME}\b", f"cluster: {cluster}", text, flags=re.M)
