"""Each distinct resources block is validated once and its (frozen) model shared.

The memo must never change a result: values of different types are different blocks, a
bad block is reported at every place it is written, and a block read back through a
derived field (infra -> cloud) looks the same nested in a document as on its own.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from skystate.exceptions import SpecError
from skystate.spec.block_cache import BlockCache, block_key
from skystate.spec.documents import Cluster
from skystate.spec.loader import load_state_dir
from skystate.spec.resources import Resources


def _write(root: Path, docs: list[str]) -> Path:
    root.mkdir()
    (root / "skystate.yaml").write_text("kind: Project\nname: memo\n")
    (root / "all.yaml").write_text("---\n".join(docs))
    return root


def test_clusters_writing_one_block_share_one_model(tmp_path: Path) -> None:
    docs = [f"kind: Cluster\nname: c{i}\nresources: {{infra: local, cpus: 2}}\n"
            for i in range(3)]
    docs.append("kind: Cluster\nname: other\nresources: {infra: local, cpus: 4}\n")
    clusters = load_state_dir(_write(tmp_path / "s", docs)).clusters
    assert clusters["c0"].resources is clusters["c1"].resources is clusters["c2"].resources
    assert clusters["other"].resources is not clusters["c0"].resources
    assert clusters["other"].resources.cpus == "4" and clusters["c0"].resources.cpus == "2"


def test_values_of_different_types_are_different_blocks() -> None:
    assert Resources.model_validate({"use_spot": True}).use_spot is True
    with pytest.raises(ValidationError, match="use_spot"):
        Resources.model_validate({"use_spot": 1})  # 1 == True, but StrictBool refuses it
    assert Resources.model_validate({"disk_size": 100}).disk_size == 100
    with pytest.raises(ValidationError):
        Resources.model_validate({"disk_size": True})
    keys = {block_key(v) for v in (1, 1.0, True, "1", [1], {"a": 1}, {"a": True}, None)}
    assert len(keys) == 8
    assert block_key({"a": 1, "b": 2}) != block_key({"b": 2, "a": 1})  # order is kept


def test_a_repeated_bad_block_is_reported_at_each_place(tmp_path: Path) -> None:
    bad = "resources: {infra: local, cpus: 1, colour: red}\n"
    docs = [f"kind: Cluster\nname: c{i}\n{bad}" for i in range(3)]
    with pytest.raises(SpecError) as info:
        load_state_dir(_write(tmp_path / "s", docs))
    issues = [i for i in info.value.issues if i.field == "resources.colour"]
    assert [i.line for i in issues] == [3, 7, 11]
    assert all("unknown field 'colour'" in i.message for i in issues)


def test_derived_location_is_read_back_but_not_written_out() -> None:
    nested = Cluster.model_validate({"name": "c", "resources": {"accelerators": "tpu-v2-8"}})
    alone = Resources.model_validate({"accelerators": "tpu-v2-8"})
    assert nested.resources.cloud == alone.cloud == "gcp"
    assert nested.resources.canonical() == alone.canonical() == {
        "accelerators": {"tpu-v2-8": 1}}
    via_infra = Cluster.model_validate({"name": "d", "resources": {"infra": "aws/us-east-1"}})
    assert via_infra.resources.region == "us-east-1"
    assert via_infra.resources.canonical() == {"infra": "aws/us-east-1"}


def test_a_tpu_on_another_cloud_is_still_refused_each_time() -> None:
    for _ in range(2):
        with pytest.raises(ValidationError, match="need cloud gcp or kubernetes"):
            Resources.model_validate({"accelerators": "tpu-v2-8", "cloud": "aws"})


def test_the_sdk_constructor_shares_the_model_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = Resources("aws", "p3.2xlarge", use_spot=True)
        second = Resources(cloud="aws", instance_type="p3.2xlarge", use_spot=True)
        again = Resources(cloud="aws", instance_type="p3.2xlarge", use_spot=True)
    assert first == second and again is second
    assert first.copy(use_spot=False).use_spot is False and first.use_spot is True


def test_objects_that_are_not_yaml_data_are_not_memoised() -> None:
    class AWS:
        def __str__(self) -> str:
            return "aws"

    assert block_key({"cloud": AWS()}) is None
    assert Resources(cloud=AWS()).cloud == "aws"


def test_the_cache_is_bounded() -> None:
    cache: BlockCache[int] = BlockCache(limit=3)
    for i in range(10):
        cache.put(block_key(i), i)
        assert len(cache) <= 3
    assert cache.get(block_key(9)) == 9 and cache.get(None) is None
