"""``$SKYSTATE_HOME/config.yaml``: ``providers:``/``defaults:`` for use outside a state dir."""

from __future__ import annotations

from typing import Any

from skystate.home import config_path


def home_config() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {}
    import yaml

    from skystate.exceptions import SpecError, SpecIssue

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError([SpecIssue(str(path), mark.line + 1 if mark else None, "",
                                   f"invalid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise SpecError([SpecIssue(str(path), 1, "", "must be a mapping")])
    return data


def home_providers_config() -> dict[str, Any]:
    """Validated ``providers:`` of config.yaml (same schema as a Project's)."""
    from skystate.spec.documents import ProvidersConfig

    return ProvidersConfig.model_validate(home_config().get("providers") or {}).model_dump(
        mode="json")
