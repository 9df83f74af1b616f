"""Output people can read: every listing is plain aligned text when piped (nothing cut to
``…``, columns dropped by priority to fit, ``-o wide`` for all, ``--json``), the
quickstart prints its job's own output, launch/exec print their phases and the job id,
and Ctrl-C names the command that really stops the job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, run_cli, status_json, wait_until

from skystate.tables import Column, Table, render_plain, visible_columns

pytestmark = pytest.mark.slow

LONG_CLUSTER = "quickstart-cluster-with-a-rather-long-name-for-testing"
LONG_JOB = "a-job-whose-name-is-also-quite-long-indeed"
ELLIPSIS = "…"


def _cli80(home: Path, *args: str, check: int | None = 0, timeout: float = 90,
           ) -> subprocess.CompletedProcess[str]:
    """The real CLI, piped (not a terminal), at 80 columns."""
    env = {**os.environ, "SKYSTATE_HOME": str(home), "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "skystate.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def _long_names_state_dir(tmp_path: Path) -> Path:
    target = tmp_path / "state"
    shutil.copytree(REPO / "examples" / "quickstart", target)
    for path in target.glob("*.yaml"):
        text = path.read_text().replace("name: quickstart", f"name: {LONG_CLUSTER}")
        text = text.replace("cluster: quickstart", f"cluster: {LONG_CLUSTER}")
        path.write_text(text.replace("name: hello", f"name: {LONG_JOB}"))
    return target


def _assert_plain(text: str) -> None:
    assert ELLIPSIS not in text and "\x1b[" not in text
    assert not any(ch in text for ch in "┃│┏━")  # no box: plain text
    assert all(line == line.rstrip() for line in text.splitlines())


# --- the renderer on its own -------------------------------------------------------


def _table() -> Table:
    return Table(title="T", columns=[Column("NAME"), Column("STATUS"), Column("WIDE", 2),
                                     Column("MID", 1)],
                 rows=[["a" * 30, "UP", "w" * 40, "m" * 10], ["b", "STOPPED", "-", "-"]])


def test_columns_are_dropped_lowest_priority_first_and_wide_keeps_all() -> None:
    table = _table()
    assert visible_columns(table, 80, wide=False) == [0, 1, 3]
    assert visible_columns(table, 200, wide=False) == [0, 1, 2, 3]
    assert visible_columns(table, 10, wide=False) == [0, 1]  # priority 0 always stays
    assert visible_columns(table, 10, wide=True) == [0, 1, 2, 3]
    text = render_plain(table, width=80)
    header = text.splitlines()[1]
    assert header.split() == ["NAME", "STATUS", "MID"]
    assert "a" * 30 in text and ELLIPSIS not in text
    assert text.splitlines()[-1] == "(-o wide adds: WIDE)"
    wide = render_plain(table, width=80, wide=True)
    assert "w" * 40 in wide and "-o wide adds" not in wide


def test_plain_columns_align_and_a_too_long_value_is_never_shortened() -> None:
    text = render_plain(_table(), width=20)  # narrower than the required columns
    lines = text.splitlines()
    assert lines[2].startswith("a" * 30 + "  UP")
    assert lines[3].index("STOPPED") == lines[1].index("STATUS") == lines[2].index("UP")
    assert all(line == line.rstrip() for line in lines)


# --- the real CLI --------------------------------------------------------------------


def test_status_queue_and_api_status_at_80_columns_keep_every_name_whole(
        home: Path, tmp_path: Path) -> None:
    state = _long_names_state_dir(tmp_path)
    applied = _cli80(home, "apply", str(state), "--yes", "--wait")
    assert "hello from skystate on node 0 of 1" in applied.stdout
    status = _cli80(home, "status").stdout
    _assert_plain(status)
    assert LONG_CLUSTER in status and LONG_JOB in status
    lines = status.splitlines()
    assert lines[0] == "Clusters" and lines[1].split()[:2] == ["NAME", "STATUS"]
    assert any(line.startswith(LONG_CLUSTER + "  UP") for line in lines)
    job_line = next(line for line in lines if LONG_JOB in line)
    assert job_line.split()[:4] == [LONG_CLUSTER, LONG_JOB, "1", "SUCCEEDED"]
    clusters_end = lines.index("")
    assert all(len(line) <= 80 for line in lines[:clusters_end])  # dropped columns to fit
    assert lines[1].split() == ["NAME", "STATUS", "HEALTH", "INFRA"]
    # the job table's names alone are wider than 80: only its required columns stay
    jobs_header = lines.index("Jobs") + 1
    assert lines[jobs_header].split() == ["CLUSTER", "NAME", "ID", "STATUS"]
    assert lines[-1].startswith("(-o wide adds: HEALTH, SUBMITTED")
    wide = _cli80(home, "status", "-o", "wide").stdout
    assert "RECONCILED" in wide and "LOG" in wide and "-o wide adds" not in wide
    assert json.loads(_cli80(home, "status", "-o", "json").stdout)["clusters"][0][
        "name"] == LONG_CLUSTER

    queue = _cli80(home, "queue", LONG_CLUSTER).stdout
    _assert_plain(queue)
    assert queue.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"]  # no title
    assert any(line.split()[:3] == ["1", LONG_JOB, "SUCCEEDED"] for line in queue.splitlines())
    assert json.loads(_cli80(home, "queue", LONG_CLUSTER, "-o", "json").stdout)[0][
        "status"] == "SUCCEEDED"

    requests = _cli80(home, "api", "status", "--all").stdout
    _assert_plain(requests)
    rows = [line.split() for line in requests.splitlines()[1:] if not line.startswith("(")]
    assert all(len(r[0]) == 36 for r in rows)  # whole request IDs
    assert {"apply", "queue"} <= {r[1] for r in rows}
    assert max(len(line) for line in requests.splitlines()) <= 80
    listed = json.loads(_cli80(home, "api", "status", "--all", "--json").stdout)
    assert {r["name"] for r in listed} >= {"apply", "queue"}
    _cli80(home, "down", LONG_CLUSTER)


def test_refresh_and_show_gpus_fit_80_columns_piped(home: Path) -> None:
    refresh = _cli80(home, "refresh").stdout
    _assert_plain(refresh)
    gpus = _cli80(home, "show-gpus", "A100").stdout
    _assert_plain(gpus)
    assert max(len(line) for line in gpus.splitlines()) <= 80
    assert "(-o wide adds: REGIONS)" in gpus
    wide = _cli80(home, "show-gpus", "A100", "-o", "wide").stdout
    assert "REGIONS" in wide and "us-east-1" in wide and " +" not in wide  # every region
    assert json.loads(_cli80(home, "show-gpus", "A100", "-o", "json").stdout)
    bad = _cli80(home, "status", "-o", "yaml", check=2)
    assert "'yaml' is not one of table, wide, json" in bad.stderr


def _on_a_terminal(home: Path, *args: str) -> str:
    """The CLI's output under a pty (a real terminal), 80 columns wide."""
    env = {**os.environ, "SKYSTATE_HOME": str(home), "COLUMNS": "80", "TERM": "xterm"}
    pid, fd = os.forkpty()
    if pid == 0:  # the child: the CLI on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "skystate.cli", *args], env)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, code = os.waitpid(pid, 0)
    os.close(fd)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(code) == 0, text
    return text


def test_a_launch_on_a_terminal_shows_a_spinner_naming_the_phase(home: Path) -> None:
    text = _on_a_terminal(home, "launch", "-c", "spin", "echo spun")
    assert "Cluster spin: launching (1x(CPU))..." in text  # the phase line itself
    spinner = [line for line in text.split("\r") if "\u280b" in line or "\u2819" in line]
    assert any("Cluster spin: launching" in line or "launch: running" in line
               for line in spinner), text  # the spinner names the phase (and its seconds)
    assert "spun" in text
    run_cli(home, "down", "spin")


def test_a_terminal_gets_a_rich_table_that_still_cuts_no_name(home: Path,
                                                              tmp_path: Path) -> None:
    """Under a pty (a real terminal), rich draws the table; no name is ellipsised."""
    state = _long_names_state_dir(tmp_path)
    _cli80(home, "apply", str(state), "--yes")
    text = _on_a_terminal(home, "status")
    assert "┃" in text or "│" in text  # a rich table
    assert "\x1b[" in text  # colour
    assert ELLIPSIS not in text
    flat = "".join(ch for ch in text if ch.isalnum() or ch == "-")
    assert LONG_CLUSTER.replace("-", "") in flat.replace("-", "")  # folded, never cut
    _cli80(home, "down", LONG_CLUSTER)


def test_launch_and_exec_print_phases_and_job_id(home: Path, tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("resources: {infra: local}\nsetup: echo set-up-ran\nrun: echo run-ran\n")
    launched = run_cli(home, "launch", str(task), "-c", "phases").stdout
    lines = launched.splitlines()
    assert lines[0] == "Cluster phases: launching (1x(CPU) on local)..."
    up = [line for line in lines if line.startswith("Cluster phases: UP on local (")]
    assert len(up) == 1 and up[0].endswith("s)")
    assert "Job on phases: submitting (setup and run)..." in lines
    assert "Job on phases: submitted as job 1 on phases." in lines
    assert "set-up-ran" in launched and "run-ran" in launched
    executed = run_cli(home, "exec", "phases", str(task), "-d").stdout
    assert "Job on phases: submitted as job 2 on phases." in executed
    assert "skystate cancel phases 2" in executed and "run-ran" not in executed
    # the SDK, as SkyPilot's: stream_and_get(sky.launch(...)) prints the phases and job id
    script = ("import skystate as sky\n"
              f"task = sky.Task.from_yaml({str(task)!r})\n"
              "job_id, handle = sky.stream_and_get(sky.exec(task, cluster_name='phases'))\n"
              "print('RESULT', job_id, handle.cluster_name)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "SKYSTATE_HOME": str(home)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Job on phases: submitted as job 3 on phases." in proc.stdout
    assert "RESULT 3 phases" in proc.stdout
    run_cli(home, "down", "phases")


def test_ctrl_c_while_following_a_job_names_skystate_cancel(home: Path,
                                                            tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("resources: {infra: local}\nrun: echo started; sleep 600\n")
    # faulthandler: should the CLI not exit, SIGABRT makes it print where it is
    env = {**os.environ, "SKYSTATE_HOME": str(home), "PYTHONFAULTHANDLER": "1"}
    with subprocess.Popen([sys.executable, "-m", "skystate.cli", "launch", str(task), "-c",
                           "sleepy"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            seen.append(line)
            if line.strip() == "started" or time.monotonic() > deadline:
                break
        assert "started\n" in seen, seen
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"the CLI did not exit within 60 s of Ctrl-C; its stacks:\n{err}")
    assert proc.returncode == 130, err
    assert "`skystate cancel sleepy 1`" in err and "`skystate logs sleepy 1`" in err
    jobs = json.loads(run_cli(home, "queue", "sleepy", "--json").stdout)
    assert jobs[0]["status"] == "RUNNING"  # Ctrl-C only stopped following it
    run_cli(home, "cancel", "sleepy", "1")
    wait_until(lambda: json.loads(run_cli(home, "queue", "sleepy", "--json").stdout)[0][
        "status"] == "CANCELLED", timeout=60, what="the cancel")
    run_cli(home, "down", "sleepy")


def test_a_request_queued_behind_another_on_the_cluster_says_so(home: Path,
                                                                tmp_path: Path) -> None:
    """``apply --wait`` holds its cluster while its job runs; an exec on that cluster
    waits its turn, and its stream says so before its own log follows."""
    state = tmp_path / "state"
    shutil.copytree(REPO / "examples" / "quickstart", state)
    go = tmp_path / "go"
    job = state / "job.yaml"
    job.write_text(job.read_text().replace(
        "run: |", f"run: |\n  while [ ! -e {go} ]; do sleep 0.1; done"))
    env = {**os.environ, "SKYSTATE_HOME": str(home)}
    applying = subprocess.Popen([sys.executable, "-m", "skystate.cli", "apply", str(state),
                                 "--yes", "--wait"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(j["status"] == "RUNNING" for j in status_json(home)["jobs"]),
                   timeout=90, what="the applied job to run")
        script = ("import skystate as sky\n"
                  "job_id, _ = sky.stream_and_get(sky.exec(sky.Task(run='echo second'), "
                  "cluster_name='quickstart'))\n"
                  "print('JOB', job_id)\n")
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed while the apply still holds the cluster
        assert "(exec) is queued: waiting for request " in first, first
        assert "(apply)" in first
        go.touch()
        rest, err = proc.communicate(timeout=120)
    finally:
        go.touch()
        applying.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Job on quickstart: submitted as job 2 on quickstart." in rest
    assert "JOB 2" in rest
    run_cli(home, "down", "quickstart")


def test_logs_of_a_missing_job_and_cancel_without_ids_speak_cli(home: Path) -> None:
    run_cli(home, "launch", "-c", "words", "-d", "echo one")
    missing = run_cli(home, "logs", "words", "99", check=102)
    assert ("Job 99 does not exist on cluster words (its jobs are 1; see `skystate queue "
            "words`).") in missing.stdout
    bare = run_cli(home, "cancel", "words", check=2)
    assert "give job IDs or --all" in bare.stderr and "skystate cancel words --all" in bare.stderr
    assert "job_ids" not in bare.stderr and "all=True" not in bare.stderr
    both = run_cli(home, "cancel", "words", "1", "--all", check=2)
    assert "not both" in both.stderr
    run_cli(home, "down", "words")


def test_quickstart_apply_wait_prints_the_job_output(home: Path) -> None:
    out = run_cli(home, "apply", str(REPO / "examples" / "quickstart"), "--yes",
                  "--wait").stdout
    assert "hello from skystate on node 0 of 1" in out
    lines = out.splitlines()
    output_at = lines.index("Job/quickstart/hello: output of job 1:")
    assert lines[output_at + 1] == "hello from skystate on node 0 of 1"
    assert lines[output_at + 2].startswith("Job/quickstart/hello: SUCCEEDED")
    assert status_json(home)["jobs"][0]["status"] == "SUCCEEDED"
    run_cli(home, "down", "quickstart")
