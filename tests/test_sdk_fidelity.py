"""SDK details as SkyPilot's: ``api_status`` payloads and ID prefixes, typed errors through
the request codec, exec's syncing, ``Resources``' signature, status/queue field types, and
a SkyPilot example program run unchanged (``import sky``) on a 2-node local cluster.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import moto_fixture
import pytest
import sshd_fixture
from helpers import wait_until
from sshd_fixture import SSHD

import skystate as sky
from skystate import exceptions

REPO = Path(__file__).resolve().parent.parent
moto_url = moto_fixture.moto_url
aws = moto_fixture.aws
sshd = sshd_fixture.sshd
CLOUD_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "GOOGLE_APPLICATION_CREDENTIALS",
             "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")


def _config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(text)


@pytest.fixture
def no_clouds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in CLOUD_ENV:
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "user-home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))


def test_api_status_rows_have_attributes_and_find_a_request_by_its_prefix(home: Path) -> None:
    request_id = sky.status()
    sky.get(request_id)
    [row] = sky.api_status([request_id[:8]])
    assert row.request_id == row["request_id"] == request_id
    assert row.name == "status" and row.status is sky.api_status([request_id])[0]["status"]
    assert row.status == "SUCCEEDED" and isinstance(row.created_at, float)
    assert row.finished_at >= row.created_at and row.user_name == row["user_name"]
    assert row.user_id and json.loads(row.request_body)["refresh"] is not None
    assert row.should_retry is False and row.cluster_name is None
    assert json.loads(json.dumps(row, default=str))["request_id"] == request_id
    with pytest.raises(AttributeError, match="no_such_field"):
        _ = row.no_such_field
    listed = [r.request_id for r in sky.api_status(all_status=True)]
    assert request_id in listed
    with pytest.raises(ValueError, match="too short"):
        sky.api_status([request_id[:4]])  # short prefixes name nothing, as for cancel


def test_resources_signature_is_the_seeds_in_the_seeds_order() -> None:
    seed = ("cloud", "instance_type", "cpus", "memory", "accelerators", "accelerator_args",
            "use_spot", "job_recovery", "region", "zone", "image_id", "disk_size",
            "disk_tier", "ports", "labels", "_docker_login_config",
            "_docker_username_for_runpod", "_is_image_managed", "_requires_fuse",
            "_cluster_config_overrides")
    sky.Resources.model_validate({"cpus": 1})  # builds the deferred model: still the seed's
    params = inspect.signature(sky.Resources).parameters
    assert tuple(params)[: len(seed)] == seed
    assert all(params[n].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for n in seed)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(params.values())[20:])
    assert "infra" in params
    assert sky.Resources(None, None, "2", None, "T4:1").accelerators == {"T4": 1}
    assert sky.Resources(*[None] * 18, True).requires_fuse is True


def test_a_request_that_needs_a_cloud_with_none_enabled_is_no_cloud_access(
        home: Path, no_clouds: None) -> None:
    _config(home, "providers:\n  local: {accelerators: {T4: 1}}\n")
    h100 = sky.Task(run="true").set_resources(sky.Resources(accelerators="H100:8"))
    for dryrun in (True, False):
        with pytest.raises(exceptions.NoCloudAccessError, match="No cloud is enabled") as info:
            sky.get(sky.launch(h100, cluster_name="nope", dryrun=dryrun))
        assert isinstance(info.value, exceptions.ResourcesUnavailableError)
        assert info.value.failover_history == []
    # What local has is no cloud question; asking a named provider is not either.
    sky.get(sky.launch(sky.Task().set_resources(sky.Resources(accelerators="T4:1")),
                       cluster_name="ok", dryrun=True))
    with pytest.raises(exceptions.ResourcesUnavailableError) as info:
        sky.get(sky.launch(sky.Task().set_resources(
            sky.Resources(infra="local", accelerators="H100:1")), cluster_name="nope"))
    assert not isinstance(info.value, exceptions.NoCloudAccessError)


def test_exec_syncs_the_workdir_but_skips_file_mounts(home: Path, tmp_path: Path) -> None:
    mounted = tmp_path / "mounted.txt"
    mounted.write_text("first")
    workdir = tmp_path / "wd"
    workdir.mkdir()
    (workdir / "w.txt").write_text("w1")
    task = sky.Task(run="cat ~/m.txt; echo; cat w.txt", workdir=str(workdir))
    task.set_file_mounts({"~/m.txt": str(mounted)})
    job_id, _ = sky.get(sky.launch(task, cluster_name="ex"))
    mounted.write_text("second")
    (workdir / "w.txt").write_text("w2")
    again = sky.Task(run="cat ~/m.txt; echo; cat w.txt", workdir=str(workdir))
    again.set_file_mounts({"~/m.txt": str(mounted), "~/gone": str(tmp_path / "missing")})
    exec_id, _ = sky.get(sky.exec(again, cluster_name="ex"))  # a missing mount: not checked
    wait_until(lambda: sky.get(sky.job_status("ex", [exec_id]))[exec_id].is_terminal(), 60,
               "exec job")
    assert sky.get(sky.job_status("ex", [exec_id]))[exec_id] is sky.JobStatus.SUCCEEDED
    logs = sky.get(sky.download_logs("ex", [job_id, exec_id]))
    assert Path(logs[str(job_id)]).read_text().split() == ["first", "w1"]
    assert Path(logs[str(exec_id)]).read_text().split() == ["first", "w2"]


def _sky_shim(folder: Path) -> Path:
    """``import sky`` gives skystate (how a SkyPilot program runs here unchanged)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sky.py").write_text("import sys\n\nimport skystate\n\n"
                                   "sys.modules[__name__] = skystate\n")
    return folder


def test_skypilot_multi_echo_program_packs_tenth_t4_jobs_on_both_nodes(
        home: Path, tmp_path: Path, no_clouds: None) -> None:
    _config(home, "providers:\n  local: {accelerators: {T4: 2}}\n")
    program = REPO / "tests" / "data" / "skypilot" / "multi_echo.py"
    barrier = tmp_path / "barrier"
    env = {**os.environ, "SKYSTATE_HOME": str(home), "MULTI_ECHO_DIR": str(barrier),
           "PYTHONPATH": f"{_sky_shim(tmp_path / 'shim')}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, str(program), "pack", "20"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all submitted" in done.stdout
    setup_log = Path(sky.get(sky.download_logs("pack", [1]))["1"]).read_text()
    assert "(rank 0) running setup" in setup_log and "(rank 1) running setup" in setup_log
    jobs = [j for j in sky.get(sky.queue("pack")) if j["resources"] == "1x[T4:0.1]"]
    assert len(jobs) == 20
    wait_until(lambda: all(j["status"].is_terminal() for j in sky.get(sky.queue("pack"))),
               600, "the 20 jobs")
    jobs = [j for j in sky.get(sky.queue("pack")) if j["resources"] == "1x[T4:0.1]"]
    assert {j["status"] for j in jobs} == {sky.JobStatus.SUCCEEDED}  # the barrier: all at once
    assert max(j["start_at"] for j in jobs) <= min(j["end_at"] for j in jobs)
    for job in jobs:  # the seed types these as int
        assert all(type(job[k]) is int for k in ("submitted_at", "start_at", "end_at"))
    markers = sorted(p.name.split(".", 1)[1] for p in barrier.iterdir())
    assert markers == ["node-0"] * 10 + ["node-1"] * 10  # packed on both nodes
    logs = sky.get(sky.download_logs("pack", [j["job_id"] for j in jobs]))
    texts = [Path(p).read_text() for p in logs.values()]
    assert all(" rank=0 " in t and " gpu=0" in t for t in texts)  # each job's own rank 0
    [record] = sky.get(sky.status(["pack"]))
    assert record["last_use"] == shlex.join([str(program), "pack", "20"])
    assert type(record["launched_at"]) is int and record["launched_at"] > 0
    sky.get(sky.down("pack"))


def test_stop_of_an_aws_spot_cluster_raises_not_supported_through_the_codec(
        aws: str, sshd: SSHD, home: Path, tmp_path: Path) -> None:
    config = {"aws": {
        "regions": moto_fixture.REGIONS, "endpoint_url": aws, "ssh_user": sshd.user,
        "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
        "isolate_home": True, "test_ssh_address": f"{sshd.address}:{sshd.port}"}}
    _config(home, "providers: " + json.dumps(config) + "\n")
    task = sky.Task().set_resources(sky.Resources(infra="aws", cpus="2+", use_spot=True))
    try:
        sky.get(sky.launch(task, cluster_name="spotty"))
        with pytest.raises(exceptions.NotSupportedError, match="spot"):
            sky.get(sky.stop("spotty"))
        with pytest.raises(exceptions.NotSupportedError):
            sky.get(sky.stop("spotty", purge=True))
        [record] = sky.get(sky.status(["spotty"]))
        assert record["status"] is sky.ClusterStatus.UP
    finally:
        sky.get(sky.down("spotty"))


def test_a_failed_remote_command_is_a_command_error_with_the_seeds_attributes(
        sshd: SSHD, home: Path) -> None:
    from skystate.providers.ssh_conn import Connections, Host, Pool, read_json_reply

    host = Host("p", sshd.address, sshd.port, sshd.user)
    pool = Pool("p", (host,), identity_file=str(sshd.key), insecure_host_keys=True)
    conns = Connections()
    try:
        result = conns.run(pool, host, "echo 'runtime is broken' >&2; exit 3")
        with pytest.raises(exceptions.CommandError) as info:
            read_json_reply(host.label, "runtime queue", result)
    finally:
        conns.close()
    error = info.value
    assert error.returncode == 3 and "runtime queue" in error.command
    assert error.error_msg == "runtime is broken"
    assert isinstance(error, exceptions.ProviderError)  # failover treats it as before


def test_last_use_is_the_command_line_with_the_program_shortened_and_secrets_redacted() -> None:
    from skystate.client_command import client_command

    assert client_command(["/opt/bin/sky", "launch", "-c", "c", "t.yaml"]) == (
        "sky launch -c c t.yaml")
    assert client_command(["/usr/local/bin/skystate", "exec", "c", "--secret", "HF=abc",
                           "--secret=K=v w"]) == (
        "skystate exec c --secret 'HF=<redacted>' '--secret=K=<redacted>'")
    assert client_command(["examples/app.py", "x y"]) == "examples/app.py 'x y'"
