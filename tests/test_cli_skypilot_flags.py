"""The CLI speaks SkyPilot: ``status -r``, ``down -a``, several clusters per stop/start/down,
``launch/exec --env --gpus --cpus --memory --infra -y -d``, ``--version``, ``down --purge``,
help on every option, and a failed launch that provisioned nothing leaves no record."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import click
import pytest
import typer
from helpers import run_cli, status_json

from skystate.cli_task import TaskOptionError, TaskOptions, build_task, parse_envs

pytestmark = pytest.mark.slow


def _names(home: Path) -> dict[str, str]:
    return {c["name"]: c["status"] for c in status_json(home)["clusters"]}


def _gpu_home(home: Path, gpus: int = 2) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(f"providers:\n  local: {{accelerators: {{A100: {gpus}}}}}\n")


# --- no server needed ------------------------------------------------------------------


def test_version_flag(home: Path) -> None:
    from skystate import __version__

    assert run_cli(home, "--version").stdout.strip() == f"skystate {__version__}"


def test_every_option_and_argument_has_help() -> None:
    from skystate.cli import app

    root = typer.main.get_command(app)
    missing = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if param.name == "help":
                continue
            if not getattr(param, "help", None):
                missing.append(f"{path} {param.name}")
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")

    walk(root, "skystate")
    assert missing == []


def test_task_flags_override_the_yaml_and_name_themselves_in_errors(tmp_path: Path,
                                                                   monkeypatch) -> None:
    yaml = tmp_path / "t.yaml"
    yaml.write_text("resources: {cloud: aws, region: us-east-1, cpus: 2}\nrun: echo hi\n"
                    "envs: {A: '1'}\n")
    task = build_task(str(yaml), TaskOptions(envs=["B=2", "A=3"], gpus="A100:1", cpus="4+",
                                              memory="16", infra="local", num_nodes=2))
    (resources,) = task.resources
    assert resources.canonical() == {"infra": "local", "accelerators": {"A100": 1},
                                     "cpus": "4+", "memory": "16"}
    assert task.envs == {"A": "3", "B": "2"} and task.num_nodes == 2
    command = build_task("echo from the command line", TaskOptions())
    assert command.run == "echo from the command line"
    monkeypatch.setenv("FROM_HERE", "x y")
    assert parse_envs(["FROM_HERE", "K=a=b"]) == {"FROM_HERE": "x y", "K": "a=b"}
    for options, flag in ((TaskOptions(gpus="A100:x"), "--gpus A100:x"),
                          (TaskOptions(cpus="lots"), "--cpus lots"),
                          (TaskOptions(memory="-1"), "--memory -1"),
                          (TaskOptions(infra="nowhere/x"), "--infra nowhere/x"),
                          (TaskOptions(envs=["=1"]), "--env '=1'"),
                          (TaskOptions(envs=["NOT_SET_ANYWHERE_42"]), "--env NOT_SET")):
        with pytest.raises(TaskOptionError, match=flag.replace("+", r"\+")):
            build_task("echo", options)
    with pytest.raises(TaskOptionError, match="does not exist"):
        build_task(str(tmp_path / "missing.yaml"), TaskOptions())


def test_a_bad_flag_is_one_error_line_naming_it(home: Path) -> None:
    bad = run_cli(home, "launch", "echo hi", "--gpus", "A100:many", check=1)
    assert bad.stderr.startswith("Error: --gpus A100:many:") and "Traceback" not in bad.stderr
    assert not (home / "state.json").exists() or _names(home) == {}


# --- against the API server and local clusters -------------------------------------


def test_launch_flags_reach_the_job_and_the_cluster(home: Path) -> None:
    _gpu_home(home)
    out = run_cli(home, "launch", "-c", "flags", "--gpus", "A100:1", "--cpus", "1+",
                  "--memory", "1+", "--infra", "local", "--env", "GREETING=hi there", "-y",
                  "-d", "--name", "greeter",
                  "echo $GREETING on $CUDA_VISIBLE_DEVICES; echo n=$SKYPILOT_NUM_NODES").stdout
    assert "Job on flags: submitted as job 1 on flags." in out
    assert "skystate logs flags 1" in out and "hi there" not in out  # -d: not streamed
    logs = run_cli(home, "logs", "flags", "1").stdout
    assert "hi there on 0" in logs and "n=1" in logs
    (cluster,) = status_json(home)["clusters"]
    assert cluster["resources"] == "1x(A100:1)" and cluster["infra"].startswith("local")
    queue = json.loads(run_cli(home, "queue", "flags", "--json").stdout)
    assert queue[0]["job_name"] == "greeter"
    run_cli(home, "exec", "flags", "echo exec $X", "--env", "X=42", "-y", "-d")
    assert "exec 42" in run_cli(home, "logs", "flags", "2").stdout
    run_cli(home, "down", "flags", "-y")


def test_several_clusters_per_stop_start_down_and_down_all(home: Path) -> None:
    for name in ("c1", "c2", "c3"):
        run_cli(home, "launch", "-c", name, "-d")
    assert _names(home) == {"c1": "UP", "c2": "UP", "c3": "UP"}
    run_cli(home, "stop", "c1", "c2")
    assert _names(home) == {"c1": "STOPPED", "c2": "STOPPED", "c3": "UP"}
    run_cli(home, "start", "c1", "c2")
    assert _names(home) == {"c1": "UP", "c2": "UP", "c3": "UP"}
    run_cli(home, "status", "-r")  # -r/--refresh as SkyPilot's
    run_cli(home, "down", "c1", "c3")
    assert _names(home) == {"c2": "UP"}
    unasked = run_cli(home, "down", "-a", check=1)  # stdin is not a terminal
    assert "pass --yes" in unasked.stderr and _names(home) == {"c2": "UP"}
    run_cli(home, "down", "-a", "-y")
    assert _names(home) == {}
    assert "give cluster names or --all" in run_cli(home, "down", check=2).stderr
    missing = run_cli(home, "down", "nosuch", check=1)
    assert "nosuch" in missing.stderr and "Traceback" not in missing.stderr


def test_failed_launch_that_provisioned_nothing_leaves_no_record(home: Path) -> None:
    _gpu_home(home, gpus=1)
    run_cli(home, "launch", "-c", "holder", "--gpus", "A100:1", "-d")
    full = run_cli(home, "launch", "-c", "second", "--gpus", "A100:1", "echo hi", check=1)
    assert "A100" in full.stderr
    nowhere = run_cli(home, "launch", "-c", "third", "--gpus", "H100:8", "echo hi", check=1)
    assert "H100" in nowhere.stderr
    assert _names(home) == {"holder": "UP"}
    assert not (home / "local" / "second").exists()
    run_cli(home, "down", "holder")


def _refused_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def test_down_purge_forgets_a_record_whose_provider_cannot_be_reached(home: Path) -> None:
    from skystate.reconcile.store import Store
    from skystate.reconcile.users import current_user

    port = _refused_port()
    store = Store()
    with store.transaction():
        store.put_cluster({
            "name": "gone", "owner": current_user(), "managed_by": "sdk", "status": "UP",
            "provider": "ssh", "power": "up", "protect": False, "immutable_hash": "h",
            "provider_config": {"pools": {"gone": {"hosts": [f"127.0.0.1:{port}"],
                                                   "user": "nobody"}}}})
        store.set_nodes("gone", [{"rank": 0, "node_id": f"127.0.0.1:{port}",
                                  "ip": "127.0.0.1", "state": "running", "ssh_port": port,
                                  "ssh_user": "nobody", "extra": {}}])
    failed = run_cli(home, "down", "gone", check=1)
    assert "gone" in failed.stderr and "Traceback" not in failed.stderr
    assert "gone" in _names(home)
    run_cli(home, "down", "gone", "--purge")
    assert _names(home) == {}
