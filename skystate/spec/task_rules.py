"""SkyPilot 0.14's rules for the task-level fields of a task YAML.

- ``envs``: names are shell variable names; values become strings (``str()``, so
  ``true`` → ``"True"``, as SkyPilot); a name with no value is an error unless something
  sets it before the task is read (``--env``, the ``envs:`` of a Job using ``from:``).
- ``secrets``: a mapping of inline values; a name with no value, a ``secrets:NAME`` key or
  the list form names a managed secret instead (moved to ``managed_secrets``).
- ``${VAR}``/``$VAR`` of ``envs`` (and inline secrets) are filled into ``file_mounts``
  (keys and values), ``workdir`` and ``volumes`` before anything else reads them.
- ``file_mounts``: no path ends in ``/``; a source is a path, a URI or a storage mapping.
- ``config.hooks``, ``inputs``/``outputs``, ``workdir: {url, ref}``: SkyPilot's shapes.

Each check raises one located error per problem (see ``issues.located``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from skystate.spec.issues import located

__all__ = ["TASK_NAME", "check_config", "check_envs", "check_inputs", "check_mounts",
           "check_workdir", "fill_env_vars", "null_env_message", "split_secrets"]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TASK_NAME = re.compile(r"^[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*$")
_VAR = re.compile(r"\$\{?\b([a-zA-Z_][a-zA-Z0-9_]*)\b\}?")  # SkyPilot's pattern
_HOOK_EVENTS = ("stop", "preemption", "down")
_SECRET_REF = "secrets:"
Errors = list[tuple[tuple[Any, ...], str]]


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else str(value)


def null_env_message(name: str) -> str:
    """What to do about an env written with no value (SkyPilot refuses one too)."""
    return (f"has no value; set it here, with --env {name}=VALUE, or in the envs: of a Job "
            f"that uses this file with from: (for an empty value write {name}: \"\")")


def check_envs(value: Any) -> Any:
    """``envs`` with string values; every problem reported at its own key."""
    if not isinstance(value, dict):
        return value
    errors: Errors = []
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = str(key)
        if not isinstance(key, str) or not ENV_NAME.match(name):
            errors.append(((key,), f"invalid variable name {name!r}: use letters, digits and _, "
                                   "not starting with a digit"))
        elif item is None:
            errors.append(((key,), null_env_message(name)))
        out[name] = _text(item)
    if errors:
        raise located("envs", errors)
    return out


def split_secrets(data: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """Managed-secret references out of ``secrets`` (list form, ``NAME:`` with no value,
    ``secrets:NAME`` keys) into ``managed_secrets``; inline values become strings.
    Returns the data and the located problems (the data unchanged when there are some)."""
    secrets = data.get("secrets")
    refs: list[Any] = []
    errors: Errors = []
    inline: dict[str, Any] | None = None
    if isinstance(secrets, list):
        for i, item in enumerate(secrets):
            if not isinstance(item, str) or not item.startswith(_SECRET_REF):
                errors.append(((i,), f"{item!r}: list items name managed secrets and need the "
                                     "secrets: prefix (secrets:HF_TOKEN); for a value use the "
                                     "mapping form, secrets: {NAME: value}"))
            else:
                refs.append(item)
    elif isinstance(secrets, dict):
        inline = {}
        for key, item in secrets.items():
            name = str(key)
            if name.startswith(_SECRET_REF) and item is not None:
                errors.append(((key,), "a secrets: reference takes no value; to give the value "
                                       "inline, drop the secrets: prefix"))
            elif name.startswith(_SECRET_REF) or item is None:
                refs.append(name)
            else:
                inline[name] = _text(item)
    else:
        return data, []
    if errors:
        return data, [(("secrets", *p), m) for p, m in errors]
    data = {k: v for k, v in data.items() if k != "secrets"}
    if inline is not None:
        data["secrets"] = inline
    if refs:
        data["managed_secrets"] = [*(data.get("managed_secrets") or []), *refs]
    return data, []


def fill_env_vars(data: dict[str, Any]) -> dict[str, Any]:
    """``${VAR}``/``$VAR`` of envs and inline secrets filled into mounts, workdir, volumes."""
    values: dict[str, str] = {}
    for field in ("envs", "secrets"):
        block = data.get(field)
        if isinstance(block, dict):
            values.update({str(k): str(v) for k, v in block.items()
                           if v is not None and not str(k).startswith(_SECRET_REF)})
    if not values:
        return data
    out = dict(data)
    for field in ("file_mounts", "workdir", "volumes"):
        if out.get(field) is not None:
            text = json.dumps(out[field])
            text = _VAR.sub(lambda m: values.get(m.group(1), m.group(0)), text)
            out[field] = json.loads(text)
    return out


def check_mounts(value: Any) -> Any:
    """``file_mounts``: no destination or source ends in ``/``; sources are strings/mappings."""
    if not isinstance(value, dict):
        return value
    errors: Errors = []
    for dst, src in value.items():
        if isinstance(dst, str) and dst.endswith("/"):
            errors.append(((dst,), f"destination {dst!r} must not end with '/'"))
        elif isinstance(src, str) and src.endswith("/"):
            errors.append(((dst,), f"source {src!r} must not end with '/'"))
        elif not isinstance(src, (str, dict)):
            errors.append(((dst,), f"source must be a path, a URI or a storage mapping, "
                                   f"got {src!r}"))
    if errors:
        raise located("file_mounts", errors)
    return value


def check_workdir(value: Any) -> Any:
    """``workdir: {url, ref}`` (a git repository): ``url`` required, nothing else."""
    if isinstance(value, dict):
        errors: Errors = []
        if "url" not in value:
            errors.append(((), "a git workdir needs url (and optionally ref)"))
        for key, item in value.items():
            if key not in ("url", "ref"):
                errors.append(((key,), f"unknown field {key!r} (a git workdir has url, ref)"))
            elif not isinstance(item, str):
                errors.append(((key,), f"must be a string, got {item!r}"))
        if errors:
            raise located("workdir", errors)
    return value


def check_inputs(value: Any) -> Any:
    """``inputs``/``outputs``: one ``{URI: estimated size in GB}``."""
    if isinstance(value, dict):
        if len(value) > 1:
            raise ValueError(f"must name one location, got {len(value)}")
        for key, size in value.items():
            if isinstance(size, bool) or not isinstance(size, (int, float)):
                raise located("inputs", [((key,), f"must be a size in GB, got {size!r}")])
    return value


def check_config(value: Any) -> Any:
    """``config.hooks``: at most 32 of ``{run, events?, timeout?}``."""
    hooks = value.get("hooks") if isinstance(value, dict) else None
    if hooks is None:
        return value
    if not isinstance(hooks, list) or len(hooks) > 32:
        raise located("config", [(("hooks",), "must be a list of at most 32 hooks")])
    errors: Errors = []
    for i, hook in enumerate(hooks):
        where = ("hooks", i)
        if not isinstance(hook, dict):
            errors.append((where, f"a hook is a mapping with run:, got {hook!r}"))
            continue
        run = hook.get("run")
        if not isinstance(run, str) or not 1 <= len(run) <= 16 * 1024:
            errors.append(((*where, "run"), "a hook needs run: a command of at most 16 KiB"))
        events = hook.get("events")
        if events is not None and (
            not isinstance(events, list) or not events or len(set(map(str, events))) < len(events)
            or any(e not in _HOOK_EVENTS for e in events)
        ):
            errors.append(((*where, "events"), f"must be a list of distinct events from "
                                               f"{', '.join(_HOOK_EVENTS)}, got {events!r}"))
        timeout = hook.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                    or timeout < 1):
            errors.append(((*where, "timeout"), f"must be a positive integer, got {timeout!r}"))
        for key in hook:
            if key not in ("run", "events", "timeout"):
                errors.append(((*where, key), f"unknown field {key!r} (a hook has run, events, "
                                              "timeout)"))
    if errors:
        raise located("config", errors)
    return value
