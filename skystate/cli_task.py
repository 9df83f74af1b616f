"""The task of ``skystate launch`` / ``exec``: a YAML file or a command, with SkyPilot's
command-line overrides (``--env K=V``, ``--gpus A100:1``, ``--cpus``, ``--memory``,
``--infra``, ``--num-nodes``, ``--name``). Each bad flag is an error that names it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skystate.exceptions import SkyStateError


class TaskOptionError(SkyStateError, ValueError):
    """A ``launch``/``exec`` flag has a value that cannot be used."""


@dataclass(frozen=True)
class TaskOptions:
    envs: list[str] = field(default_factory=list)
    gpus: str | None = None
    cpus: str | None = None
    memory: str | None = None
    infra: str | None = None
    num_nodes: int | None = None
    name: str | None = None


def is_yaml_path(entrypoint: str) -> bool:
    return Path(entrypoint).suffix in (".yaml", ".yml") or Path(entrypoint).is_file()


def build_task(entrypoint: str | None, options: TaskOptions) -> Any:
    """A Task from a YAML path or a shell command (SkyPilot's ENTRYPOINT), overridden."""
    from skystate.spec.task import Task

    if entrypoint is None:
        task = Task()
    elif is_yaml_path(entrypoint):
        if not Path(entrypoint).is_file():
            raise TaskOptionError(f"task YAML {entrypoint!r} does not exist")
        # --env applies before the YAML is checked (it may set an env left without a value)
        task = Task.from_yaml(entrypoint, env_overrides=parse_envs(options.envs or []))
    else:
        task = Task(run=entrypoint)
    if options.name:
        task.name = options.name
    if options.num_nodes is not None:
        if options.num_nodes < 1:
            raise TaskOptionError(f"--num-nodes {options.num_nodes}: must be at least 1")
        task.num_nodes = options.num_nodes
    if options.envs:
        task.update_envs(parse_envs(options.envs))
    override = resource_override(options)
    if override:
        task.set_resources_override(override)
    return task


def parse_envs(values: list[str]) -> dict[str, str]:
    """``K=V``, or ``K`` alone to pass the local value of ``$K`` (as SkyPilot)."""
    envs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise TaskOptionError(f"--env {value!r}: give KEY=VALUE (KEY: letters, digits, _)")
        if not sep:
            if key not in os.environ:
                raise TaskOptionError(f"--env {key}: ${key} is not set here; give {key}=VALUE")
            text = os.environ[key]
        envs[key] = text
    return envs


def resource_override(options: TaskOptions) -> dict[str, Any]:
    """The resources fields the flags set, each checked with the flag's name in errors."""
    from skystate.spec.resources import parse_accelerators, parse_infra, parse_quantity

    override: dict[str, Any] = {}
    checks = (("--gpus", "accelerators", options.gpus, parse_accelerators),
              ("--cpus", "cpus", options.cpus, lambda v: parse_quantity(v, "cpus")),
              ("--memory", "memory", options.memory, lambda v: parse_quantity(v, "memory")),
              ("--infra", "infra", options.infra, parse_infra))
    for flag, key, value, parse in checks:
        if value is None:
            continue
        try:
            parse(value)
        except ValueError as exc:
            raise TaskOptionError(f"{flag} {value}: {exc}") from None
        override[key] = value
    if "infra" in override:  # --infra replaces the YAML's location, whichever form it had
        override.update(cloud=None, region=None, zone=None)
    return override
