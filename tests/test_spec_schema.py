"""The JSON Schema for editors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from skystate.spec.documents import DOCUMENT_KINDS
from skystate.spec.schema import state_file_schema, task_schema

VALID = Path(__file__).parent / "data" / "spec" / "valid"


def test_schema_is_json_schema_shaped_and_lists_every_kind():
    schema = state_file_schema()
    json.dumps(schema)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] and schema["description"]
    kinds = set()
    for option in schema["oneOf"]:
        body = schema["$defs"][option["$ref"].rsplit("/", 1)[-1]]
        kinds.add(body["properties"]["kind"]["const"])
        assert {"kind", "name"} <= set(body["required"])
        assert body["description"]
    assert kinds == set(DOCUMENT_KINDS)
    assert "from" in schema["$defs"]["Job"]["properties"]


def test_state_files_validate_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = state_file_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    docs = [d for f in sorted(VALID.rglob("*.y*ml")) if ".hidden" not in f.parts
            and "tasks" not in f.parts for d in yaml.safe_load_all(f.read_text())]
    assert len(docs) == 7
    for doc in docs:
        assert not list(validator.iter_errors(doc)), doc
    assert list(validator.iter_errors({"kind": "Cluster", "name": "x", "resourcez": {}}))


def test_task_schema_is_generated():
    schema = task_schema()
    assert schema["title"] == "SkyPilot task YAML"
    assert "resources" in schema["properties"]
