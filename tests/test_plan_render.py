"""The plan text of a large plan stays readable: alike changes grouped, unchanged counted.

Plans come from the real planner and optimizer (the local provider's offers); the CLI test
runs ``skystate plan`` on a generated state directory with its output on a pipe.
"""

from __future__ import annotations

from pathlib import Path

from helpers import run_cli

from skystate.providers.optimizer import rank_offers
from skystate.providers.registry import Providers
from skystate.reconcile.actual import ActualState
from skystate.reconcile.desired_views import cluster_view, job_view
from skystate.reconcile.plan import Plan
from skystate.reconcile.planner import make_plan
from skystate.reconcile.render import DETAIL_LIMIT, NAMES_SHOWN, render_plan
from skystate.spec.desired import DesiredState
from skystate.spec.documents import Cluster, Job, Project

OWNER = "big"
PROVIDERS = Providers({})


def _plan(clusters: list[Cluster], jobs: list[Job], recorded: list[Cluster] = (),
          recorded_jobs: list[Job] = ()) -> Plan:
    """A plan of ``clusters`` and ``jobs`` against the ``recorded`` ones (UP, SUCCEEDED)."""
    desired = DesiredState(project=Project(name=OWNER), owner=OWNER,
                           clusters={c.name: c for c in clusters},
                           jobs={(j.cluster, j.name): j for j in jobs})
    records = {}
    for cluster in recorded:
        offer = rank_offers(cluster.resources, 1, PROVIDERS)[0].to_dict()
        records[cluster.name] = {**cluster_view(cluster, OWNER), "status": "UP",
                                 "offer": offer, "provider": "local"}
    job_records = {(j.cluster, j.name): {**job_view(j, OWNER), "status": "SUCCEEDED",
                                         "job_id": i} for i, j in enumerate(recorded_jobs)}
    actual = ActualState(version=1, clusters=records, jobs=job_records)
    return make_plan(desired, actual, rank_offers=lambda r, n: rank_offers(r, n, PROVIDERS),
                     now=0.0)


def _fleet(n: int) -> tuple[list[Cluster], list[Job]]:
    clusters = [Cluster(name=f"c{i}", resources={"infra": "local", "cpus": 1})
                for i in range(n)]
    jobs = [Job(name=f"j{i}", cluster=f"c{i}", run=f"echo {i}") for i in range(n)]
    return clusters, jobs


def test_a_large_plan_groups_alike_changes_and_counts_the_unchanged() -> None:
    clusters, jobs = _fleet(300)
    odd = Cluster(name="odd", resources={"infra": "local", "cpus": 2})
    was = Cluster(name="odd", resources={"infra": "local", "cpus": 1})
    plan = _plan([odd, *clusters], jobs, [was, *clusters[:100]], jobs[:100])
    assert len(plan.changes) == 401
    text = render_plan(plan, markup=False)
    lines = text.splitlines()
    assert len(lines) < 40, text
    assert "  + 200 Clusters  create  local local on-demand $0.00/h" in lines
    assert "  + 200 Jobs  submit-job" in lines
    first = ", ".join(f"c{i}" for i in range(100, 100 + NAMES_SHOWN))
    assert f"      {first}, … and {200 - NAMES_SHOWN} more" in lines
    assert "      e.g. Job/c100/j100:" in lines and "        + run: 'echo 100'" in lines
    assert "-/+ Cluster/odd  replace  local local on-demand $0.00/h" in lines  # alone: detailed
    assert "      ~ resources.cpus: '1' → '2'" in lines
    assert "  (401 changes, alike ones grouped; --full lists each, --json has every field)" \
        in lines
    assert "  = 100 Cluster(s) unchanged" in lines
    assert "  = 100 Job(s) spec unchanged (last run SUCCEEDED)" in lines
    assert "Plan: 200 to create, 1 to replace" in text and "200 job(s) to submit" in text

    full = render_plan(plan, full=True, markup=False)
    assert all(f"Cluster/c{i}  create" in full for i in range(100, 300))
    assert "grouped" not in full


def test_a_small_plan_lists_every_change_in_detail() -> None:
    clusters, jobs = _fleet(DETAIL_LIMIT // 2)
    text = render_plan(_plan(clusters, jobs), markup=False)
    assert all(f"+ Job/c{i}/j{i}  submit-job" in text for i in range(DETAIL_LIMIT // 2))
    assert "grouped" not in text
    few, few_jobs = _fleet(3)
    no_change = render_plan(_plan(few, few_jobs, few, few_jobs), markup=False)
    assert no_change.splitlines() == [
        "No changes. The infrastructure matches the files (6 resource(s) unchanged).",
        "  = 3 Cluster(s) unchanged: c0, c1, c2",
        "  = 3 Job(s) spec unchanged (last run SUCCEEDED): c0/j0, c1/j1, c2/j2"]


def test_markup_in_names_and_values_is_shown_literally() -> None:
    job = Job(name="j", cluster="c", run="echo [bold]x[/bold]")
    plan = _plan([Cluster(name="c", resources={"infra": "local"})], [job])
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render_plan(plan))
    assert "echo [bold]x[/bold]" in console.export_text()


def test_cli_plan_of_a_large_directory_prints_grouped_plain_text(
        home: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "skystate.yaml").write_text("kind: Project\nname: big\n")
    docs = [f"kind: Cluster\nname: c{i}\nresources: {{infra: local, cpus: 1}}\n---\n"
            f"kind: Job\nname: j{i}\ncluster: c{i}\nrun: echo {i}\n" for i in range(500)]
    (state / "all.yaml").write_text("---\n".join(docs))
    out = run_cli(home, "plan", str(state), timeout=120).stdout
    assert "  + 500 Clusters  create" in out and "  + 500 Jobs  submit-job" in out
    assert "[green]" not in out and "[dim]" not in out
    assert len(out.splitlines()) < 30
    full = run_cli(home, "plan", str(state), "--full", timeout=120).stdout
    assert full.count("  create  ") == 500
