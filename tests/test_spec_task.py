"""sky.Task / sky.Resources compatibility and SkyPilot task YAMLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from skystate.exceptions import SpecError
from skystate.spec.clouds import AWS, GCP, Local
from skystate.spec.documents import ServiceSpec, TaskSpec
from skystate.spec.storage import StorageMode, StoreType
from skystate.spec.task import Resources, Task

EXAMPLES = Path(__file__).parent / "data" / "spec" / "skypilot"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_skypilot_examples_load_and_round_trip(path: Path):
    task = Task.from_yaml(path, env_overrides={"HF_TOKEN": "hf_x"})  # --env, as SkyPilot needs
    assert isinstance(task.run, str)
    again = Task.from_yaml_config(task.to_yaml_config())
    assert again == task
    assert isinstance(task.to_spec(), TaskSpec)


def test_finetune_example_fields():
    with pytest.raises(SpecError, match=r"finetune-llama.yaml:\d+: envs.HF_TOKEN: has no value; "
                                        r"set it here, with --env HF_TOKEN=VALUE"):
        Task.from_yaml(EXAMPLES / "finetune-llama.yaml")  # SkyPilot refuses a null env too
    task = Task.from_yaml(EXAMPLES / "finetune-llama.yaml", env_overrides=[("HF_TOKEN", "t")])
    assert task.name == "finetune-llama" and task.num_nodes == 2
    assert task.envs == {"MODEL_NAME": "meta-llama/Llama-3.1-8B", "EPOCHS": "3", "HF_TOKEN": "t"}
    assert task.secrets == {}  # a secret with no value names a managed secret (SkyPilot)
    assert task.extra["managed_secrets"] == ["WANDB_API_KEY"]
    assert task.file_mounts == {"/data": "./data", "~/.netrc": "~/.netrc"}
    storage = task.storage_mounts["/checkpoints"]
    assert storage.name == "my-llama-checkpoints" and list(storage.stores) == [StoreType.S3]
    assert storage.mode is StorageMode.MOUNT and storage.persistent is True
    (res,) = task.resources
    assert res.accelerators == {"A100": 8} and res.disk_tier == "best"


def test_any_of_becomes_a_set_and_accelerator_list_an_ordered_list():
    any_of = Task.from_yaml(EXAMPLES / "any-of-gpus.yaml").resources
    assert isinstance(any_of, set) and len(any_of) == 3
    assert all(r.use_spot and r.cpus == "8+" for r in any_of)
    ordered = Task.from_yaml(EXAMPLES / "ordered-accelerators.yaml").resources
    assert isinstance(ordered, list)
    assert [r.accelerator_str() for r in ordered] == ["H100:1", "A100-80GB:1", "L4:1"]
    service = Task.from_yaml(EXAMPLES / "vllm-service.yaml")
    assert isinstance(service.service, ServiceSpec)
    assert {r.disk_size for r in service.resources} == {100}


def test_from_yaml_errors_name_file_line_field_and_suggest(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text("run: echo\nresources:\n  acelerators: V100\nnum_node: 2\n")
    with pytest.raises(ValueError) as info:
        Task.from_yaml(path)
    assert isinstance(info.value, SpecError)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:3: resources.acelerators: unknown field 'acelerators'; "
        "did you mean 'accelerators'?",
        f"{path}:4: num_node: unknown field 'num_node'; did you mean 'num_nodes'?",
    ]


def test_from_yaml_config_errors_have_no_line():
    with pytest.raises(SpecError) as info:
        Task.from_yaml_config({"run": "x", "num_nodes": 0})
    (issue,) = info.value.issues
    assert issue.line is None and issue.field == "num_nodes"


def test_task_defaults_and_fluent_setters():
    task = Task(run="echo hi")
    assert task.resources == {Resources()} and task.num_nodes == 1
    assert task.envs == {} and task.secrets == {} and task.storage_mounts == {}
    assert task.file_mounts is None and task.service is None
    out = (
        task.set_resources(Resources(accelerators="V100:4"))
        .set_file_mounts({"/remote": "/local"})
        .update_file_mounts({"/r2": "s3://b"})
        .set_storage_mounts({"/ckpt": {"name": "bucket"}})
        .update_storage_mounts({"/more": {"name": "bucket-two"}})
        .update_envs({"A": 1})
        .update_envs([("B", "2")])
        .update_secrets({"TOKEN": "x"})
        .set_service({"readiness_probe": "/", "replicas": 2})
        .set_resources_override({"use_spot": True})
    )
    assert out is task
    assert task.resources == {Resources(accelerators={"V100": 4}, use_spot=True)}
    assert task.file_mounts == {"/remote": "/local", "/r2": "s3://b"}
    assert set(task.storage_mounts) == {"/ckpt", "/more"}
    assert task.envs == {"A": "1", "B": "2"} and task.secrets == {"TOKEN": "x"}
    assert task.service is not None and task.service.replicas == 2
    task.set_resources([Resources(cpus=2), Resources(cpus=4)])
    assert isinstance(task.resources, list)
    assert [r.use_spot for r in task.resources] == [True, True]  # override kept


def test_constructor_matches_the_sdk_signature():
    task = Task("t", setup="s", run="r", envs={"X": "1"}, workdir=".", num_nodes=2,
                docker_image="img", event_callback="cb", blocked_resources=[Resources()],
                file_mounts_mapping={"a": "b"})
    assert (task.name, task.setup, task.workdir, task.num_nodes) == ("t", "s", ".", 2)
    with pytest.raises(TypeError):
        Task("t", "setup")  # type: ignore[misc]
    with pytest.raises(ValueError):
        Task(num_nodes=0)


def test_run_may_be_a_command_generator():
    task = Task(run=lambda rank, ips: f"echo {rank} of {len(ips)}", num_nodes=2)
    assert callable(task.run) and task.run(1, ["a", "b"]) == "echo 1 of 2"
    with pytest.raises(ValueError):
        task.to_yaml_config()
    with pytest.raises(ValueError):
        Task(run=3)  # type: ignore[arg-type]


def test_invalid_setter_inputs_raise_value_error():
    with pytest.raises(ValueError):
        Task().set_file_mounts({"/remote/": "/local"})
    with pytest.raises(ValueError):
        Task().update_envs({"1BAD": "x"})
    with pytest.raises(ValueError):
        Task().set_resources("A100")  # type: ignore[arg-type]


# --- Resources ---------------------------------------------------------------------------


def test_resources_spellings_normalise_to_equal_objects():
    assert Resources(accelerators="A100:8") == Resources(accelerators={"A100": 8})
    assert Resources(accelerators="V100") == Resources(accelerators="V100:1")
    assert Resources(cpus=8) == Resources(cpus="8")
    assert Resources(memory="16GB+") == Resources(memory="16.0+")
    assert Resources(ports=8080) == Resources(ports=["8080"])
    assert Resources(cloud=AWS()) == Resources(cloud="AWS") == Resources(cloud="aws")
    assert hash(Resources(accelerators="A100:8")) == hash(Resources(accelerators={"A100": 8}))
    assert len({Resources(cpus=8), Resources(cpus="8")}) == 1


def test_resources_positional_order_is_skypilots():
    res = Resources(AWS(), "p3.2xlarge")
    assert (res.cloud, res.instance_type) == ("aws", "p3.2xlarge")
    res = Resources(GCP(), "n1-standard-8", None, None, "V100")
    assert res.accelerators == {"V100": 1} and res.cloud == "gcp"
    assert Resources(Local()).cloud == "local"
    with pytest.raises(TypeError):
        Resources(AWS(), cloud="gcp")


def test_resources_are_immutable_and_copy_with_changes():
    res = Resources(accelerators="A100:8")
    with pytest.raises(ValueError):
        res.use_spot = True  # type: ignore[misc]
    spot = res.copy(use_spot=True)
    assert spot.use_spot is True and res.use_spot is None
    assert spot.accelerators == {"A100": 8}


@pytest.mark.parametrize("bad", ["A100:x", {"A100": -1}, {"A100": "many"}, "1bad:2"])
def test_bad_accelerators_are_rejected(bad):
    with pytest.raises(ValueError, match="accelerators"):
        Resources(accelerators=bad)


def test_skypilot_resource_shorthands():
    assert Resources(disk_size="1TB").disk_size == 1024
    res = Resources.model_validate({"autostop": "2h"})
    assert res.autostop is not None and res.autostop.idle_minutes == 120
    several = Resources.model_validate({"accelerators": {"A100": 8, "H100": 8}})
    assert [r.accelerators for r in several.candidates()] == [{"A100": 8}, {"H100": 8}]
    internal = Resources.model_validate({"_requires_fuse": True, "max_hourly_cost": 3.5})
    assert internal.requires_fuse is True
