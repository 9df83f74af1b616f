"""Hardening of what users write: bounded input, nothing escapes the node, check before
you spend (docs/security-spec.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sshd_fixture
from helpers import REPO, wait_job

from skystate.enums import JobStatus
from skystate.exceptions import ClusterDoesNotExist, ProviderError, SpecError
from skystate.spec import limits
from skystate.spec.loader import load_state_dir
from skystate.spec.task import Resources, Task
from skystate.spec.yaml_lines import parse_yaml

MALFORMED = REPO / "tests" / "data" / "malformed"
sshd = sshd_fixture.sshd


def _bomb(levels: int = 9) -> str:
    lines = ["kind: Cluster", "name: laughs", "a: &a [" + ", ".join(["lol"] * 9) + "]"]
    prev = "a"
    for name in "bcdefghijklmnop"[:levels - 1]:
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def _issues(tmp_path: Path, text: str, name: str = "x.yaml") -> list[str]:
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    return [str(i) for i in info.value.issues]


# --- part 5: bounded input ------------------------------------------------------------


def test_alias_bomb_is_refused_at_the_key_that_expands() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml(_bomb(), "bomb.yaml")
    (issue,) = info.value.issues
    assert issue.file == "bomb.yaml" and issue.line == 7  # "f:", the first past the budget
    assert "aliases expand past the limit" in issue.message


def test_alias_bomb_is_refused_without_exhausting_memory() -> None:
    """Under a 1 GiB address-space limit (the bomb expands to ~3*10^9 objects)."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from skystate.exceptions import SpecError\n"
        "from skystate.spec.yaml_lines import parse_yaml\n"
        "try:\n"
        "    parse_yaml(sys.stdin.read(), 'bomb.yaml')\n"
        "except SpecError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=_bomb(12), text=True,
                          capture_output=True, timeout=120, env={**os.environ,
                                                                 "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bomb.yaml:") and "alias bomb" in done.stdout


def test_anchors_shared_many_times_still_load() -> None:
    shared = "x: &r {cpus: 4, memory: 16, accelerators: {A100: 8}, labels: {a: b, c: d}}\n"
    text = shared + "".join(f"j{i}: *r\n" for i in range(1500))  # 18,000 nodes built again
    (doc,) = parse_yaml(text, "ok.yaml")
    assert doc.data["j1499"] == doc.data["x"]


def test_duplicate_key_names_both_lines() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("kind: Cluster\nname: a\nresources:\n  cpus: 4\n  cpus: 8\n", "d.yaml")
    assert [str(i) for i in info.value.issues] == [
        "d.yaml:5: duplicate key 'cpus' (first at line 4)"
    ]


def test_merge_keys_are_not_duplicates_and_explicit_keys_win() -> None:
    text = "a: &a {k: 1, j: 2}\nb: &b {k: 3, m: 4}\nc:\n  <<: [*a, *b]\n  j: 9\n"
    (doc,) = parse_yaml(text, "m.yaml")
    assert doc.data["c"] == {"k": 1, "m": 4, "j": 9}
    assert doc.lines[("c", "j")] == 5


def test_a_file_over_16_mib_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "big.yaml", "wb") as out:
        out.truncate(17 * 1024 * 1024)
    issues = _issues(tmp_path, "kind: Cluster\nname: ok\n", "ok.yaml")
    assert len(issues) == 1 and "big.yaml: file is 17,825,792 bytes" in issues[0]


@pytest.mark.parametrize(
    ("block", "line", "words"),
    [
        ("num_nodes: 1001", 3, "num_nodes: must be at most 1000"),
        ("resources: {cpus: 1025}", 3, "cpus: must be at most 1,024 per node"),
        ("resources: {cpus: '99999999999999999999+'}", 3, "cpus: must be at most"),
        ("resources: {memory: 40000}", 3, "memory: must be at most 32,768 GB"),
        ("resources: {accelerators: 'A100:65'}", 3, "count of A100 must be at most 64"),
        ("resources: {accelerators: {A100: .nan}}", 3, "count of A100 must be positive"),
        ("resources: {disk_size: 65TB}", 3, "disk_size: must be at most 65,536 GB"),
        ("resources: {ports: [" + ", ".join(str(p) for p in range(1000, 1051)) + "]}", 3,
         "at most 50 ports or ranges"),
        ("resources: {ports: '0-80'}", 3, "out of range 1-65535"),
        ("resources: {job_recovery: {max_restarts_on_errors: 1001}}", 3, "at most 1000"),
    ],
)
def test_counts_past_their_bound_are_refused_at_their_line(
    tmp_path: Path, block: str, line: int, words: str
) -> None:
    (issue,) = _issues(tmp_path, f"kind: Cluster\nname: c\n{block}\n")
    assert issue.startswith(f"x.yaml:{line}:") or f"/x.yaml:{line}:" in issue
    assert words in issue


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    ports = ", ".join(f"'{1000 + 3 * i}-{1001 + 3 * i}'" for i in range(limits.MAX_PORT_ENTRIES))
    (tmp_path / "c.yaml").write_text(
        "kind: Cluster\nname: c\nnum_nodes: 1000\nresources:\n  cpus: 1024\n  memory: 32768\n"
        f"  accelerators: H100:64\n  disk_size: 64TB\n  ports: [{ports}, ]\n"
    )
    cluster = load_state_dir(tmp_path).clusters["c"]
    assert cluster.num_nodes == 1000 and cluster.resources.disk_size == 65536
    assert len(cluster.resources.ports or []) == limits.MAX_PORT_ENTRIES


def test_a_task_object_has_the_same_bounds() -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        Task(run="true", num_nodes=5000)
    with pytest.raises(ValueError, match="at most 64 per node"):
        Resources(accelerators="A100:1000")


def test_error_list_is_capped_with_a_count_of_the_rest(tmp_path: Path) -> None:
    for i in range(120):
        (tmp_path / f"c{i:03}.yaml").write_text(f"kind: Cluster\nname: c{i}\nnum_nodes: 0\n")
    done = subprocess.run([sys.executable, "-m", "skystate.cli", "validate", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "120 problem(s)" in lines[0]
    assert len(lines) == 1 + SpecError.SHOWN_ISSUES + 1
    assert lines[-1].strip() == "... and 70 more errors"
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    assert len(info.value.issues) == 120 and str(info.value).endswith("... and 70 more errors")


def test_setup_or_run_too_large_for_one_argument_is_refused_at_its_line(tmp_path: Path) -> None:
    big = "echo " + "x" * (limits.MAX_COMMAND_BYTES) + "\n"
    text = "kind: ManagedJob\nname: j\nrun: |\n" + "".join(f"  {row}" for row in [big])
    (issue,) = _issues(tmp_path, text)
    assert ":3: run: run is too large" in issue and "128 KiB in one argument" in issue
    quotes = "echo '" + "'" * 30_000 + "'\n"  # small, but 5x per level of shell quoting
    (issue,) = _issues(tmp_path, "kind: ManagedJob\nname: j\nsetup: " + repr(quotes) + "\n")
    assert ":3: setup: setup is too large" in issue
    envs = "".join(f"  V{i}: '{'v' * 1000}'\n" for i in range(30))
    (issue,) = _issues(tmp_path, "kind: ManagedJob\nname: j\nrun: 'true'\nenvs:\n" + envs)
    assert ":4: envs: are too large" in issue


def _near_limit_script(tag: str) -> str:
    """A script just under MAX_COMMAND_BYTES that prints ``tag`` (a big comment block)."""
    filler = ("# " + "f" * 98 + "\n") * ((limits.MAX_COMMAND_BYTES - 2048) // 101)
    return f"{filler}echo {tag}-$SKYPILOT_NODE_RANK\n"


@pytest.fixture
def local(home: Path) -> Iterator[object]:
    from skystate.providers.local import LocalProvider

    prov = LocalProvider(cpus_per_node=1)
    yield prov
    for obs in prov.observe():
        prov.terminate(obs.name, obs.owner or "")


def _agent(prov: object, name: str, num_nodes: int = 1) -> object:
    from skystate.providers.base import OfferQuery, ProvisionRequest

    offer = prov.offers(OfferQuery(num_nodes=num_nodes))[0]  # type: ignore[attr-defined]
    return prov.agent(prov.provision(  # type: ignore[attr-defined]
        ProvisionRequest(name, "me", offer, num_nodes)))


@pytest.mark.slow
def test_largest_allowed_setup_and_run_reach_every_local_node(local: object) -> None:
    """3 nodes x 94 KiB: the phase wrapper is run from a file, not one 280 KiB argument."""
    from skystate.providers.base import JobRequest

    setup, run = _near_limit_script("setup"), _near_limit_script("run")
    Task(setup=setup, run=run).to_spec()  # within the limits
    agent = _agent(local, "big", num_nodes=3)
    job_id = agent.submit(JobRequest(name="big", setup=setup, run=run, num_nodes=3))
    assert wait_job(agent, job_id, timeout=60) is JobStatus.SUCCEEDED
    log = agent.read_log(job_id)
    assert all(f"{p}-{r}" in log for p in ("setup", "run") for r in range(3)), log


@pytest.mark.slow
def test_largest_allowed_setup_and_run_reach_every_ssh_node(
    sshd: sshd_fixture.SSHD, home: Path, tmp_path: Path
) -> None:
    """Over SSH: the job spec goes by SFTP, the worker rank gets it quoted in one argument."""
    from skystate.providers.base import JobRequest, OfferQuery, ProvisionRequest
    from skystate.providers.registry import Providers

    lab = {"hosts": [sshd.address, "localhost"], "port": sshd.port, "user": sshd.user,
           "identity_file": str(sshd.key), "remote_dir": str(tmp_path / "remote" / "{host}"),
           "isolate_home": True}
    prov = Providers({"ssh": {"pools": {"lab": lab}}}).get("ssh")
    try:
        offer = prov.offers(OfferQuery(num_nodes=2))[0]
        agent = prov.agent(prov.provision(ProvisionRequest("big", "me", offer, 2)))
        setup, run = _near_limit_script("setup"), _near_limit_script("run")
        job_id = agent.submit(JobRequest(name="big", setup=setup, run=run, num_nodes=2))
        assert wait_job(agent, job_id, timeout=60) is JobStatus.SUCCEEDED
        log = agent.read_log(job_id)
        assert all(f"{p}-{r}" in log for p in ("setup", "run") for r in range(2)), log
    finally:
        for obs in prov.observe():
            prov.terminate(obs.name, obs.owner or "")
        prov.close()


# --- part 6: nothing escapes the node ----------------------------------------------------


@pytest.mark.parametrize("dst", ["~/../x", "~/a/../../x", "/../etc/x", "../x", "/a/../../b", ".."])
def test_mount_destinations_that_climb_out_are_refused(tmp_path: Path, dst: str) -> None:
    (issue,) = _issues(tmp_path, f"kind: Cluster\nname: c\nfile_mounts:\n  {dst!r}: /tmp\n")
    assert ":4: file_mounts." in issue and "climbs above" in issue
    with pytest.raises(ValueError, match="climbs above"):
        Task(run="true").set_file_mounts({dst: "/tmp"})


@pytest.mark.parametrize("dst", ["~/x", "~/a/../b", "/data", "/a/../b", "rel/dir", "~"])
def test_mount_destinations_that_stay_on_the_node_are_accepted(tmp_path: Path, dst: str) -> None:
    (tmp_path / "c.yaml").write_text(f"kind: Cluster\nname: c\nfile_mounts:\n  {dst!r}: /tmp\n")
    assert load_state_dir(tmp_path).clusters["c"].file_mounts == {dst: "/tmp"}


@pytest.mark.slow
def test_a_symlink_in_the_node_does_not_lead_a_mount_out(local: object, tmp_path: Path) -> None:
    from skystate.providers.base import JobRequest

    agent = _agent(local, "c1")
    node = Path(agent.head)  # type: ignore[attr-defined]
    outside = tmp_path / "outside"
    outside.mkdir()
    (node / "home" / "out").symlink_to(outside)  # as a job could: ln -s /elsewhere ~/out
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f.txt").write_text("data")
    with pytest.raises(ProviderError, match="leads outside the node folder"):
        agent.submit(JobRequest(name="j", run="true", file_mounts={"~/out/x": str(source)}))
    (node / "home" / "dir" / "sub").parent.mkdir(parents=True)
    (node / "home" / "dir" / "sub").symlink_to(outside)  # a symlink below the target
    with pytest.raises(ProviderError, match="through a symlink"):
        agent.submit(JobRequest(name="j", run="true", file_mounts={"~/dir": str(source)}))
    (node / "home" / "sky_workdir").symlink_to(outside)
    with pytest.raises(ProviderError, match="leads outside"):
        agent.submit(JobRequest(name="j", run="true", workdir=str(source)))
    assert list(outside.iterdir()) == []
    inside = node / "home" / "inside"
    inside.mkdir()
    (node / "home" / "link").symlink_to(inside)  # a symlink within the node is fine
    job_id = agent.submit(JobRequest(name="j", run="cat ~/link/x/sub/f.txt",
                                     file_mounts={"~/link/x": str(source)}))
    assert wait_job(agent, job_id) is JobStatus.SUCCEEDED
    assert agent.read_log(job_id).strip() == "data"


def test_from_naming_its_own_file_or_a_cycle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: ManagedJob\nname: a\nfrom: b.yaml\n")
    (tmp_path / "b.yaml").write_text("kind: ManagedJob\nname: b\nfrom: ./a.yaml\n")
    (tmp_path / "s.yaml").write_text("kind: ManagedJob\nname: s\nfrom: s.yaml\n")
    (tmp_path / "t.yaml").write_text("kind: ManagedJob\nname: t\nfrom: a.yaml\n")
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    by_file = {Path(i.file).name: (i.line, i.message) for i in info.value.issues}
    assert len(info.value.issues) == 4
    assert by_file["a.yaml"][0] == 3 and "a cycle of from: (" in by_file["a.yaml"][1]
    assert by_file["b.yaml"][0] == 3 and "b.yaml -> " in by_file["b.yaml"][1]
    assert by_file["s.yaml"] == (3, "'s.yaml' is this file itself; from: must name a SkyPilot "
                                    "task YAML")
    assert "'a.yaml' is a state file" in by_file["t.yaml"][1]


# --- part 7: check before you spend -------------------------------------------------------


def test_missing_workdir_or_mount_source_fails_validate_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "there").mkdir()
    text = ("kind: Cluster\nname: c\nworkdir: ./there\nfile_mounts:\n  /ok: ./there\n"
            "  /data: ./missing-data\n  /ckpt: s3://bucket/ckpt\n---\n"
            "kind: ManagedJob\nname: j\nworkdir: ./missing-src\n")
    issues = _issues(tmp_path, text)
    assert len(issues) == 2
    assert re.search(r"x\.yaml:6: file_mounts\./data: file mount source '.*missing-data' does "
                     "not exist", issues[0])
    assert re.search(r"x\.yaml:11: workdir: workdir '.*missing-src' does not exist", issues[1])


def _no_trace_of(name: str) -> None:
    from skystate.home import local_clusters_dir
    from skystate.reconcile.imperative import cluster_record

    with pytest.raises(ClusterDoesNotExist):
        cluster_record(name)
    assert not (local_clusters_dir() / name).exists()


def test_launch_with_a_missing_workdir_provisions_nothing(home: Path, tmp_path: Path) -> None:
    from skystate.reconcile import operations

    (tmp_path / "task.yaml").write_text(
        "resources: {infra: local}\nworkdir: ./nowhere\nrun: echo hi\n")
    task = Task.from_yaml(tmp_path / "task.yaml")
    with pytest.raises(SpecError) as info:
        task.check_sources()
    assert str(info.value).startswith(f"{tmp_path / 'task.yaml'}:2: workdir: workdir ")
    config = task.to_yaml_config()  # as it reaches the server: a dict
    with pytest.raises(SpecError, match="workdir './nowhere' does not exist"):
        operations.launch(config, cluster_name="nowork")
    _no_trace_of("nowork")
    mounts = Task(run="true", workdir=str(tmp_path)).set_resources(Resources(infra="local"))
    mounts.set_file_mounts({"/data": str(tmp_path / "missing")})
    with pytest.raises(SpecError, match="file mount source .* does not exist"):
        operations.launch(mounts, cluster_name="nomount")
    _no_trace_of("nomount")


def test_apply_with_a_missing_mount_source_provisions_nothing(home: Path, tmp_path: Path) -> None:
    from skystate.reconcile.engine import apply_state_dir

    state = tmp_path / "state"
    state.mkdir()
    (state / "c.yaml").write_text("kind: Cluster\nname: c\nresources: {infra: local}\n"
                                  "file_mounts:\n  ~/data: ./data\n")
    with pytest.raises(SpecError, match=r"c\.yaml:5: file_mounts\.~/data: file mount source"):
        apply_state_dir(state, confirm=lambda plan: True)
    _no_trace_of("c")


# --- all of it at once ---------------------------------------------------------------------


def test_validate_on_the_malformed_directory_gives_one_error_per_file() -> None:
    """Exit 1, one file:line error per file; under a 1 GiB address-space limit."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from skystate.cli import main\n"
        "sys.argv = ['skystate', 'validate', sys.argv[1]]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(MALFORMED)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr
    files = sorted(p.name for p in MALFORMED.glob("*.yaml"))
    issues = [line.strip() for line in done.stderr.splitlines()[1:]]
    assert f"{len(files)} problem(s)" in done.stderr.splitlines()[0]
    found = sorted(re.match(r".*/([^/:]+\.yaml):\d+: ", line).group(1)  # type: ignore[union-attr]
                   for line in issues)
    assert found == files, done.stderr
    assert any("alias-bomb.yaml:7: YAML aliases expand past the limit" in i for i in issues)
