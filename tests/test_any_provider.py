"""Resources without ``infra`` are optimized over every enabled provider (as in SkyPilot).

What counts as enabled is decided without network calls (providers/enabled.py); plans and
launches say which providers were considered, and an infeasible launch explains itself in
the same words as ``plan``. ``check`` and ``show-gpus`` inside a state directory use its
Project's providers. AWS is moto (a real EC2 HTTP API on loopback); the launch test's
"instance" is the local test sshd.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import moto_fixture
import pytest
import sshd_fixture
from helpers import run_cli
from moto_fixture import REGIONS
from sshd_fixture import SSHD

from skystate.providers.enabled import enabled_providers
from skystate.providers.optimizer import explain_infeasible, rank_offers
from skystate.providers.registry import Providers
from skystate.spec.resources import Resources

moto_url = moto_fixture.moto_url
aws = moto_fixture.aws
sshd = sshd_fixture.sshd

CLOUD_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_SHARED_CREDENTIALS_FILE",
             "AWS_CONFIG_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
             "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_CONFIG")


@pytest.fixture
def no_clouds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No cloud credentials anywhere (an empty HOME); returns that HOME."""
    for key in CLOUD_ENV:
        monkeypatch.delenv(key, raising=False)
    fake_home = tmp_path / "user-home"
    fake_home.mkdir()
    monkeypatch.setenv("HOME", str(fake_home))
    return fake_home


def test_enabled_is_decided_from_config_environment_and_files(no_clouds: Path) -> None:
    env: dict[str, str] = {"HOME": str(no_clouds)}
    bare = enabled_providers({}, env)
    assert bare.considered == ("local",)
    assert set(bare.skipped) == {"ssh", "aws", "gcp"}
    assert "no pools configured" in bare.skipped["ssh"]

    pools = {"ssh": {"pools": {"lab": {"hosts": ["10.0.0.1"]}}}}
    assert enabled_providers(pools, env).considered == ("local", "ssh")

    keys = {**env, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    assert "aws" in enabled_providers({}, keys).considered
    (no_clouds / ".aws").mkdir()
    (no_clouds / ".aws" / "credentials").write_text("[default]\naws_access_key_id = k\n")
    assert "aws" in enabled_providers({}, env).considered

    adc = no_clouds / "adc.json"
    adc.write_text("{}")
    without_project = enabled_providers({}, {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(adc)})
    assert "no project" in without_project.skipped["gcp"]
    with_project = enabled_providers({"gcp": {"project": "p"}},
                                     {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(adc)})
    assert "gcp" in with_project.considered
    endpoint = enabled_providers({"gcp": {"api_endpoint": "http://127.0.0.1:9", "project": "p"}},
                                 env)
    assert "gcp" in endpoint.considered


def test_a_provider_whose_extra_is_not_installed_is_skipped_not_an_error(
        no_clouds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pip install -e .`` without extras: the quickstart must still plan (a fresh machine).

    The missing packages are hidden with ``sys.modules[name] = None``, which makes their import
    fail exactly as when they are not installed; nothing is uninstalled.
    """
    import sys
    hidden = ("google", "boto3", "fabric")
    for name in [m for m in sys.modules if m.split(".")[0] in hidden] + list(hidden):
        monkeypatch.setitem(sys.modules, name, None)
    adc = no_clouds / "adc.json"
    adc.write_text("{}")
    env = {"HOME": str(no_clouds), "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
           "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    config = {"gcp": {"project": "p"}, "ssh": {"pools": {"lab": {"hosts": ["10.0.0.1"]}}}}
    bare = enabled_providers(config, env)
    assert bare.considered == ("local",)
    assert "skystate[gcp]" in bare.skipped["gcp"]
    assert "skystate[aws]" in bare.skipped["aws"]
    assert "skystate[ssh]" in bare.skipped["ssh"]
    endpoint = enabled_providers({"gcp": {"api_endpoint": "http://127.0.0.1:9", "project": "p"}},
                                 env)
    assert "gcp" not in endpoint.considered


def test_no_infra_is_optimized_over_enabled_providers_only(
        no_clouds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = Resources.model_validate({"accelerators": "T4:1"})
    assert rank_offers(gpu, 1, Providers({})) == []
    reason = explain_infeasible(gpu, Providers({}))
    assert "local offers nothing with accelerators=T4:1" in reason
    assert "its inventory (providers.local.accelerators): none" in reason
    assert "considered local; not enabled: ssh (no pools configured), aws (" in reason

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    offers = rank_offers(gpu, 1, Providers({"aws": {"regions": REGIONS}}))
    assert offers and {o.provider for o in offers} == {"aws"}
    assert offers[0].accelerators == {"T4": 1} and offers[0].region in REGIONS
    # local's inventory fits and costs nothing: it wins; the cloud offers follow (failover)
    local_too = rank_offers(gpu, 1, Providers({"aws": {"regions": REGIONS},
                                               "local": {"accelerators": {"T4": 2}}}))
    assert local_too[0].provider == "local" and local_too[1].provider == "aws"
    # an explicit infra is not widened
    pinned = Resources.model_validate({"infra": "local", "accelerators": "T4:1"})
    assert rank_offers(pinned, 1, Providers({"aws": {"regions": REGIONS}})) == []


def _state_dir(tmp_path: Path, providers: dict[str, Any], resources: str) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text(
        "kind: Project\nname: anywhere\nproviders: " + json.dumps(providers) + "\n")
    (state / "c.yaml").write_text(f"kind: Cluster\nname: gpu\nresources: {resources}\n"
                                  "autostop: {idle_minutes: 5}\n")
    return state


def test_plan_without_infra_picks_a_cloud_offer_and_says_what_was_considered(
        home: Path, tmp_path: Path, no_clouds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    state = _state_dir(tmp_path, {"aws": {"regions": REGIONS}}, "{accelerators: T4:1}")
    plan = json.loads(run_cli(home, "plan", str(state), "--json").stdout)
    (create,) = plan["actions"]
    assert create["offer"]["provider"] == "aws" and create["offer"]["accelerators"] == {"T4": 1}
    assert plan["considered_providers"] == ["local", "aws"]
    assert set(plan["skipped_providers"]) == {"ssh", "gcp"}
    text = run_cli(home, "plan", str(state)).stdout
    assert "Cluster/gpu  create  aws/" in text
    assert ("Clusters without infra go to the best offer of any enabled provider: considered "
            "local, aws; not enabled: ssh (no pools configured), gcp (") in text


def test_infeasible_launch_explains_exactly_as_plan_naming_each_provider(
        home: Path, tmp_path: Path, no_clouds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    providers = {"aws": {"regions": REGIONS}, "local": {"accelerators": {"A100": 2}}}
    state = _state_dir(tmp_path, providers, "{accelerators: H100:3}")
    plan = run_cli(home, "plan", str(state), check=1).stdout
    prefix = "Cluster/gpu: no offer satisfies the request: "
    (line,) = [ln for ln in plan.splitlines() if prefix in ln]
    reason = line.split(prefix, 1)[1]
    for part in ("local offers nothing with accelerators=H100:3",
                 "its inventory (providers.local.accelerators): A100:2",
                 "aws offers nothing with accelerators=H100:3", "H100 comes in counts",
                 "considered local, aws; not enabled: ssh (no pools configured), gcp ("):
        assert part in reason, (part, reason)

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers: " + json.dumps(providers) + "\n")
    task = tmp_path / "task.yaml"
    task.write_text("resources: {accelerators: H100:3}\nrun: nvidia-smi\n")
    launch = run_cli(home, "launch", str(task), "-c", "gpu", check=1, timeout=120)
    error = " ".join((launch.stdout + launch.stderr).split())
    assert f"cluster 'gpu': no offer satisfies the request: {reason}" in error, error
    assert "gpu" not in json.dumps(json.loads(run_cli(home, "status", "--json").stdout))


def test_check_and_show_gpus_in_a_state_directory_use_its_project(
        home: Path, tmp_path: Path, no_clouds: Path) -> None:
    state = _state_dir(tmp_path, {"local": {"accelerators": {"L4": 3}}}, "{cpus: 1}")
    inside = json.loads(run_cli(home, "check", "--json", cwd=state).stdout)
    local = next(r for r in inside if r["name"] == "local")
    assert "L4:3" in local["reason"] and local["enabled_without_infra"] is True
    assert "project 'anywhere'" in run_cli(home, "check", cwd=state).stdout
    gpus = json.loads(run_cli(home, "show-gpus", "L4", "--cloud", "local", "--json",
                              cwd=state).stdout)
    assert [(g["accelerator"], g["count"], g["cloud"]) for g in gpus] == [("L4", 3, "local")]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run_cli(home, "show-gpus", "L4", "--cloud", "local", check=1, cwd=outside)
    elsewhere = json.loads(run_cli(home, "check", "--json", cwd=outside).stdout)
    assert "L4" not in next(r for r in elsewhere if r["name"] == "local")["reason"]


def test_launch_of_a_gpu_task_without_infra_runs_on_aws_when_local_has_none(
        aws: str, sshd: SSHD, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
                "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    config = {"aws": {
        "regions": REGIONS, "endpoint_url": aws, "ssh_user": sshd.user,
        "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
        "isolate_home": True, "test_ssh_address": f"{sshd.address}:{sshd.port}"}}
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("providers: " + json.dumps(config) + "\n")
    task = tmp_path / "task.yaml"
    task.write_text("resources: {accelerators: T4:1}\n"
                    "run: echo gpus=$CUDA_VISIBLE_DEVICES on $SKYPILOT_NODE_RANK\n")
    try:
        out = run_cli(home, "launch", str(task), "-c", "anygpu", "-d", timeout=300)
        text = out.stdout + out.stderr
        assert "No infra given: considered local, aws; not enabled: ssh" in text, text
        assert "gpus=0 on 0" in run_cli(home, "logs", "anygpu", "1", timeout=120).stdout
        status = json.loads(run_cli(home, "status", "--json").stdout)
        (cluster,) = [c for c in status["clusters"] if c["name"] == "anygpu"]
        assert "aws" in json.dumps(cluster) and "T4" in json.dumps(cluster)
    finally:
        run_cli(home, "down", "anygpu", check=None, timeout=120)
