"""JSON Schema of the state-file format, for editors (``skystate schema``).

Generated from the pydantic models; fields that accept SkyPilot's shorthands
(``cpus: 8``, ``accelerators: A100:8``, ``autostop: 30``, ``ports: 8080``...) are
widened so an editor does not flag what the loader accepts.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic.json_schema import models_json_schema

from skystate.spec.documents import DOCUMENT_KINDS, TaskSpec

SCHEMA_ID = "https://skystate.dev/schemas/state-file.json"

_STRING_OR_NUMBER = {"anyOf": [{"type": "string"}, {"type": "number"}]}
_ENV_VALUES = {"type": "object", "additionalProperties": {}}  # any value becomes its str()
_SECRET_REFS = {"type": "array", "items": {"type": "string", "pattern": "^secrets:"}}

# Wider shapes of Resources fields (the loader normalises them).
_RESOURCES_FIELDS: dict[str, dict[str, Any]] = {
    "cpus": {**_STRING_OR_NUMBER, "description": "vCPUs: 8 exactly, or '8+' at least."},
    "memory": {**_STRING_OR_NUMBER, "description": "GiB of memory: 32 exactly, or '32+'."},
    "accelerators": {
        "anyOf": [
            {"type": "string", "description": "'A100' or 'A100:8'"},
            {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
            {"type": "array", "items": {"type": "string"}},
            {"type": "null"},
        ],
        "description": "GPUs/TPUs: 'A100:8' or {A100: 8}; several = any of them.",
    },
    "ports": {
        "anyOf": [
            {"type": "integer"},
            {"type": "string"},
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
            {"type": "null"},
        ],
        "description": "Ports to open: 8080, '8000-8010' or a list.",
    },
    "disk_size": {
        "anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}],
        "description": "Disk size in GB: 256, or '1TB'.",
    },
}
_AUTOSTOP_SHORTHAND = [
    {"type": "boolean"},
    {"type": "integer", "minimum": 0},
    {"type": "string", "pattern": r"^\d+\s*[smhdwSMHDW]?$"},
]
_JOB_RECOVERY_SHORTHAND = [{"type": "string"}]
_DESCRIPTIONS = {
    "Project": "Project-wide settings: owner label, defaults, provider inventory.",
    "Cluster": "A cluster kept in the desired power state (up or stopped).",
    "Job": "A job run once per spec on a cluster of this directory.",
    "ManagedJob": "A job with its own cluster, recovered from preemption, torn down after.",
    "Service": "Replicas behind a load balancer, autoscaled.",
}


def _any_case(words: list[str]) -> dict[str, Any]:
    """A string equal to one of ``words`` in any case (the loader lower-cases it)."""
    alternatives = "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c)
                                    for c in word) for word in words)
    return {"type": "string", "pattern": f"^(?:{alternatives})$"}


def _case_insensitive(props: dict[str, Any], name: str) -> None:
    prop = props.get(name)
    arms = prop.get("anyOf", [prop]) if isinstance(prop, dict) else []
    words = [w for arm in arms for w in arm.get("enum", [])]
    if words:
        props[name] = {"anyOf": [_any_case(words), {"type": "null"}], "default": None}


def _widen(defs: dict[str, Any]) -> None:
    resources = defs.get("Resources")
    if resources:
        props = resources["properties"]
        for name, shape in _RESOURCES_FIELDS.items():
            if name in props:
                props[name] = {**shape, "default": None}
        for name in ("disk_tier", "network_tier"):
            _case_insensitive(props, name)
        props["gpus"] = {**_RESOURCES_FIELDS["accelerators"], "default": None,
                         "description": "Another name for accelerators (SkyPilot's)."}
        props["any_of"]["description"] = "Options; the optimizer picks the cheapest."
        props["ordered"]["description"] = "Options in order of preference."
        resources["description"] = "SkyPilot's resources block (same fields and meaning)."
    recovery = defs.get("JobRecovery", {}).get("properties", {}).get("recover_on_exit_codes")
    if recovery is not None:
        recovery["anyOf"] = [{"type": "integer", "minimum": 0, "maximum": 255},
                             *recovery.get("anyOf", [])]
    for name in ("AutostopSpec", "ResourcesAutostop"):
        if name in defs:
            _case_insensitive(defs[name].get("properties", {}), "wait_for")
    for name, extra in (("AutostopSpec", _AUTOSTOP_SHORTHAND),
                        ("ResourcesAutostop", _AUTOSTOP_SHORTHAND),
                        ("JobRecovery", _JOB_RECOVERY_SHORTHAND)):
        model = defs.get(name)
        if model:
            body = {k: v for k, v in model.items() if k not in ("title", "description")}
            for key in list(body):
                model.pop(key)
            model["anyOf"] = [*extra, body]
    for model in defs.values():
        props = model.get("properties", {})
        for key in ("envs", "secrets"):
            if key in props:
                forms = [_ENV_VALUES, _SECRET_REFS] if key == "secrets" else [_ENV_VALUES]
                props[key] = {"anyOf": [*forms, {"type": "null"}], "default": None}


def state_file_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for one state-file document, ``oneOf`` by ``kind``."""
    kinds = list(DOCUMENT_KINDS.values())
    mapping, schemas = models_json_schema(
        [(model, "validation") for model in kinds], ref_template="#/$defs/{model}"
    )
    defs = copy.deepcopy(schemas.get("$defs", {}))
    _widen(defs)
    one_of = []
    for name, model in DOCUMENT_KINDS.items():
        ref = mapping[(model, "validation")]["$ref"]
        body = defs[ref.rsplit("/", 1)[-1]]
        body["description"] = _DESCRIPTIONS.get(name, body.get("description", ""))
        body.setdefault("required", [])
        for key in ("kind", "name"):
            if key not in body["required"]:
                body["required"].append(key)
        body["properties"]["kind"] = {"const": name, "type": "string"}
        one_of.append({"$ref": ref})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "skystate state file",
        "description": (
            "One document of a skystate state directory (a file may hold several, "
            "separated by ---). 'kind' selects the document type."
        ),
        "type": "object",
        "required": ["kind", "name"],
        "oneOf": one_of,
        "$defs": defs,
    }


def task_schema() -> dict[str, Any]:
    """A JSON Schema of a SkyPilot task YAML as skystate accepts it."""
    schema = TaskSpec.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.get("$defs", {})
    _widen(defs)
    _widen({"TaskSpec": schema})
    schema["title"] = "SkyPilot task YAML"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
