"""SkyPilot 0.14 task-YAML semantics beyond one file's verdict (tests/test_sky_compat.py).

Overrides of a null env (``--env``, a Job's ``envs:`` over ``from:``), ``${VAR}`` in
file_mounts, cloud/region/zone read back from ``infra`` but never written out, and errors
that land on their field's own line, all at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skystate.cli_task import TaskOptions, build_task
from skystate.exceptions import SpecError
from skystate.spec.loader import load_state_dir
from skystate.spec.resources import Resources
from skystate.spec.task import Task

NULL_ENV_TASK = ("envs:\n  HF_TOKEN:\n  SIZE: 7\n"
                 "file_mounts:\n  /m/llama-${SIZE}b: s3://w/${HF_TOKEN}\nrun: echo $HF_TOKEN\n")


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    return path


def test_a_null_env_is_refused_at_its_line_saying_how_to_set_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml", NULL_ENV_TASK)
    with pytest.raises(SpecError) as info:
        Task.from_yaml(path)
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (2, "envs.HF_TOKEN")
    assert "--env HF_TOKEN=VALUE" in issue.message and "from:" in issue.message


def test_env_overrides_set_a_null_env_before_the_yaml_is_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml", NULL_ENV_TASK)
    task = Task.from_yaml(path, env_overrides=[("HF_TOKEN", "abc")])
    assert task.envs == {"HF_TOKEN": "abc", "SIZE": "7"}
    assert task.file_mounts == {"/m/llama-7b": "s3://w/abc"}  # filled in, as SkyPilot


def test_the_cli_env_flag_sets_a_null_env(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml", NULL_ENV_TASK)
    task = build_task(str(path), TaskOptions(envs=["HF_TOKEN=from-cli"]))
    assert task.envs["HF_TOKEN"] == "from-cli"


def test_a_job_using_from_sets_the_null_env(tmp_path: Path) -> None:
    _write(tmp_path, "task.sky.yaml", NULL_ENV_TASK)
    _write(tmp_path, "c.yaml", "kind: Cluster\nname: c\n---\nkind: Job\nname: j\ncluster: c\n"
                               "from: task.sky.yaml\nenvs:\n  HF_TOKEN: set-by-job\n")
    job = load_state_dir(tmp_path).jobs[("c", "j")]
    assert job.envs == {"HF_TOKEN": "set-by-job", "SIZE": "7"}
    assert list(job.file_mounts or {}) == ["/m/llama-7b"]


def test_a_job_using_from_without_the_env_points_at_the_task_file(tmp_path: Path) -> None:
    _write(tmp_path, "task.sky.yaml", NULL_ENV_TASK)
    _write(tmp_path, "c.yaml", "kind: Cluster\nname: c\n---\nkind: Job\nname: j\ncluster: c\n"
                               "from: task.sky.yaml\n")
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    assert any(i.field == "envs.HF_TOKEN" and "has no value" in i.message
               for i in info.value.issues)


def test_cloud_region_zone_read_back_from_infra_but_are_not_written_out() -> None:
    res = Resources(infra="aws/us-east-1/us-east-1a", cpus=4)
    assert (res.cloud, res.region, res.zone) == ("aws", "us-east-1", "us-east-1a")
    assert res.model_dump(exclude_none=True) == {"infra": "aws/us-east-1/us-east-1a", "cpus": "4"}
    assert res.copy(cpus=8).cloud == "aws" and res.copy(infra="gcp").region is None
    assert Resources(infra="ssh/lab").region == "ssh-lab"  # SkyPilot's context name
    assert Resources(infra="ssh/lab").location() == ("ssh", "lab", None)  # the pool
    assert Resources(accelerators="tpu-v3-8").cloud == "gcp"
    task = Task.from_yaml_config({"resources": {"infra": "gcp", "accelerators": "tpu-v3-8"}})
    assert Task.from_yaml_config(task.to_yaml_config()) == task


def test_a_flow_map_of_counted_accelerators_is_any_of_them() -> None:
    task = Task.from_yaml_config({"resources": {"accelerators": {"L4:1": None, "A10G:2": None}}})
    assert isinstance(task.resources, set)
    assert sorted(r.accelerator_str() for r in task.resources) == ["A10G:2", "L4:1"]
    crossed = Task.from_yaml_config({"resources": {
        "gpus": {"A100": 1, "V100": 1}, "any_of": [{"infra": "aws"}, {"infra": "gcp"}]}})
    assert {(r.cloud, r.accelerator_str()) for r in crossed.resources} == {
        ("aws", "A100:1"), ("aws", "V100:1"), ("gcp", "A100:1"), ("gcp", "V100:1")}


def test_every_error_of_a_file_is_reported_at_its_own_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml", "resources:\n  cloud: awss\n  infra: aws\n"
                                      "  spot_recovery: failover\n  any_of:\n    - gpus: A100\n"
                                      "      accelerators: A100\n"
                                      "envs:\n  A:\nnum_nodes: '2'\n")
    with pytest.raises(SpecError) as info:
        Task.from_yaml(path)
    got = {(i.line, i.field): i.message for i in info.value.issues}
    assert got[(4, "resources.spot_recovery")].endswith("did you mean 'job_recovery'?")
    assert "set either infra or cloud" in got[(2, "resources.cloud")]
    assert "gpus or accelerators" in got[(6, "resources.any_of[0].gpus")]
    assert "has no value" in got[(9, "envs.A")]
    assert got[(10, "num_nodes")] == "must be an integer, got '2'"


def test_a_misspelt_cloud_gets_a_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml", "resources:\n  cloud: gpc\n")
    with pytest.raises(SpecError, match=r"t.yaml:2: resources.cloud: unknown cloud 'gpc'; "
                                        r"did you mean 'gcp'\?"):
        Task.from_yaml(path)
    path = _write(tmp_path, "u.yaml", "resources:\n  infra: nebuis/eu-north1\n")
    with pytest.raises(SpecError, match=r"did you mean 'nebius'\?"):
        Task.from_yaml(path)
