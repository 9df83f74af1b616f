"""The CLI end to end on the local provider: real agent processes, real jobs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO, run_cli, status_json, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    target = tmp_path / "state"
    shutil.copytree(REPO / "examples" / "quickstart", target)
    return target


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def test_quickstart_example_end_to_end(home: Path, tmp_path: Path) -> None:
    """examples/quickstart: plan says 2 before apply and 0 after; the job prints its line."""
    example = REPO / "examples" / "quickstart"
    run_cli(home, "plan", str(example), "--detailed-exitcode", check=2)
    out = run_cli(home, "apply", str(example), "--yes", "--wait").stdout
    assert "SUCCEEDED" in out
    from skystate.reconcile.store import Store

    audit = {(e["address"], e["action"], e["outcome"])
             for e in Store(home / "state.json").events()}
    assert {("Cluster/quickstart", "create", "succeeded"),
            ("Job/quickstart/hello", "submit-job", "succeeded")} <= audit
    status = status_json(home)
    assert [(c["name"], c["status"]) for c in status["clusters"]] == [("quickstart", "UP")]
    job = status["jobs"][0]
    assert (job["name"], job["status"]) == ("hello", "SUCCEEDED")
    assert "hello from skystate on node 0 of 1" in Path(job["log_path"]).read_text()
    logs = run_cli(home, "logs", "quickstart", str(job["job_id"]))
    assert "hello from skystate" in logs.stdout
    run_cli(home, "plan", str(example), "--detailed-exitcode", check=0)
    run_cli(home, "down", "quickstart")
    assert status_json(home)["clusters"] == []


def test_editing_run_resubmits_only_that_job(home: Path, state_dir: Path) -> None:
    _write(state_dir / "job2.yaml", "kind: Job\nname: other\ncluster: quickstart\nrun: echo 2\n")
    run_cli(home, "apply", str(state_dir), "--yes", "--wait")
    first = {j["name"]: j["job_id"] for j in status_json(home)["jobs"]}
    job_yaml = state_dir / "job.yaml"
    _write(job_yaml, job_yaml.read_text().replace("on node", "again on node"))
    plan = run_cli(home, "plan", str(state_dir), "--json").stdout
    import json

    changes = [(a["type"], a["address"]) for a in json.loads(plan)["actions"]
               if a["type"] != "noop"]
    assert changes == [("submit-job", "Job/quickstart/hello")]
    run_cli(home, "apply", str(state_dir), "--yes", "--wait")
    second = {j["name"]: j["job_id"] for j in status_json(home)["jobs"]}
    assert second["other"] == first["other"] and second["hello"] != first["hello"]
    job = wait_for_job(home, "quickstart", "hello")
    assert "again on node 0" in Path(job["log_path"]).read_text()


def test_accelerator_change_replaces_and_protect_blocks_it(home: Path, state_dir: Path) -> None:
    run_cli(home, "apply", str(state_dir), "--yes")
    cluster_yaml = state_dir / "cluster.yaml"
    gpus = cluster_yaml.read_text().replace("cpus: 1+", "cpus: 1+\n  accelerators: A100:2")
    _write(cluster_yaml, gpus)
    plan = run_cli(home, "plan", str(state_dir), check=0).stdout
    assert "-/+ Cluster/quickstart" in plan and "replace" in plan
    assert "resources.accelerators" in plan
    _write(cluster_yaml, cluster_yaml.read_text() + "protect: true\n")
    blocked = run_cli(home, "plan", str(state_dir), check=1)
    assert "protected" in blocked.stdout and "Traceback" not in blocked.stderr
    refused = run_cli(home, "apply", str(state_dir), "--yes", check=1)
    assert "protect" in refused.stderr


def test_deleting_files_prunes_owned_but_never_sdk_clusters(home: Path, state_dir: Path,
                                                            tmp_path: Path) -> None:
    run_cli(home, "apply", str(state_dir), "--yes")
    _launch_imperative_cluster(home, "adhoc")
    (state_dir / "job.yaml").unlink()
    (state_dir / "cluster.yaml").unlink()
    out = run_cli(home, "plan", str(state_dir), "--json").stdout
    import json

    changes = [(a["type"], a["address"]) for a in json.loads(out)["actions"]]
    assert changes == [("cancel-job", "Job/quickstart/hello"), ("down", "Cluster/quickstart")]
    run_cli(home, "apply", str(state_dir), "--yes")
    assert [c["name"] for c in status_json(home)["clusters"]] == ["adhoc"]


def _launch_imperative_cluster(home: Path, name: str) -> None:
    """A cluster recorded as launched through the SDK (managed_by: sdk)."""
    import os
    import subprocess
    import sys

    code = f"""
from skystate.providers.local import LocalProvider
from skystate.providers.base import ProvisionRequest, OfferQuery
from skystate.reconcile.store import Store
from skystate.reconcile.handles import node_records
prov = LocalProvider()
offer = prov.offers(OfferQuery())[0]
obs = prov.provision(ProvisionRequest(cluster_name={name!r}, owner="me", offer=offer, num_nodes=1))
store = Store()
with store.transaction():
    store.put_cluster({{"name": {name!r}, "owner": "me", "managed_by": "sdk", "status": "UP",
                       "provider": "local", "offer": offer.to_dict(), "num_nodes": 1,
                       "resources": {{}}, "immutable_hash": "x", "mutable_hash": "y"}})
    store.set_nodes({name!r}, node_records(obs))
"""
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "SKYSTATE_HOME": str(home)})


def test_saved_plan_is_refused_when_stale(home: Path, state_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    run_cli(home, "plan", str(state_dir), "-o", str(saved))
    run_cli(home, "apply", str(state_dir), "--yes")
    stale = run_cli(home, "apply", str(saved), check=1)
    assert "stale" in stale.stderr and "Traceback" not in stale.stderr
    fresh = tmp_path / "fresh.json"
    _write(state_dir / "job.yaml", (state_dir / "job.yaml").read_text().replace("on node", "on"))
    run_cli(home, "plan", str(state_dir), "-o", str(fresh))
    out = run_cli(home, "apply", str(fresh)).stdout
    assert "submitted" in out


def test_malformed_directory_lists_every_error_and_changes_nothing(home: Path,
                                                                   tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(bad / "a.yaml", "kind: Cluster\nname: train\nnum_nodes: -1\nresources:\n"
           "  acelerators: A100:8\n")
    _write(bad / "b.yaml", "kind: Cluster\nname: train\nresources:\n  accelerators: A100:x\n"
           "---\nkind: Job\nname: j\ncluster: nope\nrun: echo\n")
    _write(bad / "c.yaml", "kind: Cluster\nname: [unclosed\n")
    before = sorted(p.name for p in home.glob("*")) if home.exists() else []
    for command in ("validate", "plan", "apply"):
        args = [command, str(bad)] + (["--yes"] if command == "apply" else [])
        proc = run_cli(home, *args, check=1)
        err = proc.stderr
        assert "Traceback" not in err
        for expected in ("a.yaml:3: num_nodes:", "a.yaml:5: resources.acelerators:",
                         "did you mean 'accelerators'", "b.yaml:4: resources.accelerators:",
                         "duplicate Cluster 'train'", "b.yaml:8: cluster:",
                         "c.yaml:3: invalid YAML"):
            assert expected in err, f"{command}: {expected!r} missing from:\n{err}"
    after = sorted(p.name for p in home.glob("*")) if home.exists() else []
    assert "state.json" not in after and after == before


def test_init_scaffolds_the_quickstart_example_under_its_own_names(
        home: Path, tmp_path: Path) -> None:
    from skystate.scaffold import renamed

    target = tmp_path / "new"
    run_cli(home, "init", str(target))
    example = REPO / "examples" / "quickstart"
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in example.iterdir())
    for path in example.iterdir():
        assert (target / path.name).read_text() == renamed(path.read_text(), "new", "new-dev")
    again = run_cli(home, "init", str(target), check=1)
    assert "never overwrites" in again.stderr
    assert "(owner 'new')" in run_cli(home, "validate", str(target)).stdout
    # init in a directory named like the example still owns nothing of the example's
    named = tmp_path / "quickstart"
    run_cli(home, "init", str(named))
    assert "(owner 'my-quickstart')" in run_cli(home, "validate", str(named)).stdout
    assert "name: my-quickstart-dev" in (named / "cluster.yaml").read_text()
    assert "cluster: my-quickstart-dev" in (named / "job.yaml").read_text()


def test_help_imports_no_cloud_sdk_fabric_or_server(home: Path) -> None:
    import os
    import subprocess
    import sys

    code = ("import sys\nsys.argv=['skystate','--help']\nimport skystate.cli as c\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "heavy={'boto3','botocore','google','fabric','paramiko','fastapi','uvicorn',"
            "'httpx','deepdiff','tinydb'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SKYSTATE_HOME": str(home)}, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_stop_and_start_through_the_cli(home: Path, state_dir: Path) -> None:
    run_cli(home, "apply", str(state_dir), "--yes")
    run_cli(home, "stop", "quickstart")
    assert status_json(home)["clusters"][0]["status"] == "STOPPED"
    plan = run_cli(home, "plan", str(state_dir)).stdout
    assert "start" in plan  # stopped by hand while power: up is drift
    run_cli(home, "start", "quickstart")
    assert status_json(home)["clusters"][0]["status"] == "UP"
    missing = run_cli(home, "stop", "nope", check=1)
    assert "does not exist" in missing.stderr


def test_changes_made_while_stopped_apply_at_start(home: Path, state_dir: Path) -> None:
    cluster_yaml = state_dir / "cluster.yaml"
    original = cluster_yaml.read_text()
    _write(cluster_yaml, original + "power: stopped\n")
    run_cli(home, "apply", str(state_dir / "cluster.yaml"), "--yes")
    assert status_json(home)["clusters"][0]["status"] == "STOPPED"
    changed = original.replace('echo "cluster setup done"', "echo NEW-SETUP").replace(
        "idle_minutes: 10", "idle_minutes: 20")
    _write(cluster_yaml, changed + "power: stopped\n")
    run_cli(home, "apply", str(state_dir / "cluster.yaml"), "--yes")
    run_cli(home, "plan", str(state_dir / "cluster.yaml"), "--detailed-exitcode", check=0)
    _write(cluster_yaml, changed)
    run_cli(home, "apply", str(state_dir / "cluster.yaml"), "--yes")
    run_cli(home, "plan", str(state_dir / "cluster.yaml"), "--detailed-exitcode", check=0)
    [cluster] = status_json(home)["clusters"]
    assert (cluster["status"], cluster["autostop"]) == ("UP", "20m")
    node = home / "local" / "quickstart" / "node-0"
    setup_logs = "".join(p.read_text() for p in (node / "logs").glob("setup-*.log"))
    assert "NEW-SETUP" in setup_logs
    import json

    from skystate.runtime import api

    settings = json.dumps(api.status(node))
    assert '"idle_minutes": 20' in settings
