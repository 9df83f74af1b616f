"""load_state_dir: defaults, from:, sources, and every error of a directory at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skystate.exceptions import SpecError, SpecIssue
from skystate.spec.loader import load_state_dir, owner_from_dir

DATA = Path(__file__).parent / "data" / "spec"


@pytest.fixture(autouse=True)
def _cwd_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent.parent)  # file names relative to the repo


def test_valid_directory_loads_every_kind():
    state = load_state_dir(DATA / "valid")
    assert state.owner == "ml-team"
    assert sorted(state.clusters) == ["dev", "train"]
    assert sorted(state.jobs) == [("dev", "eval"), ("train", "finetune")]
    assert list(state.managed_jobs) == ["pretrain"]
    assert list(state.services) == ["llm"]


def test_project_defaults_merge_under_resources_and_autostop():
    state = load_state_dir(DATA / "valid")
    train, dev = state.clusters["train"], state.clusters["dev"]
    assert train.resources.infra == "local"  # default filled in
    assert train.resources.accelerators == {"A100": 8}
    assert dev.resources.infra == "aws/us-east-1"  # own location wins
    assert train.autostop is not None and train.autostop.idle_minutes == 60
    assert dev.autostop is not None and dev.autostop.idle_minutes == 10
    assert state.services["llm"].resources is not None
    assert state.services["llm"].resources.infra == "local"


def test_from_task_yaml_is_overlaid_by_inline_fields():
    job = load_state_dir(DATA / "valid").jobs[("train", "finetune")]
    assert job.run == "python train.py --epochs 3"  # inline wins
    assert job.setup == "pip install -r requirements.txt"  # from the task file
    assert job.envs == {"HF_HOME": "/data/hf", "WANDB_MODE": "offline"}  # key-wise
    assert job.resources is not None
    assert job.resources.accelerators == {"A100": 4}  # field-wise: inline
    assert job.resources.use_spot is True  # field-wise: base
    assert job.num_nodes == 2
    # relative to the task file that wrote it
    assert job.workdir == str((DATA / "valid" / "src").absolute())


def test_relative_paths_become_absolute_relative_to_their_file():
    train = load_state_dir(DATA / "valid").clusters["train"]
    assert train.workdir == str((DATA / "valid").absolute())
    assert train.file_mounts == {
        "/data": str((DATA / "valid" / "data").absolute()),
        "/ckpt": "s3://bucket/ckpt",
    }


def test_sources_point_at_each_document_start():
    sources = load_state_dir(DATA / "valid").sources
    base = "tests/data/spec/valid/"
    assert str(sources["Cluster/train"]) == base + "clusters.yaml:1"
    assert str(sources["Cluster/dev"]) == base + "clusters.yaml:12"
    assert str(sources["Job/train/finetune"]) == base + "jobs/finetune.yaml:1"
    assert str(sources["Job/dev/eval"]) == base + "jobs/finetune.yaml:9"
    assert str(sources["Service/llm"]) == base + "services.yml:6"


def test_hidden_folders_and_from_targets_are_not_state_documents():
    # valid/.hidden/broken.yaml is invalid YAML and tasks/*.sky.yaml has no kind
    load_state_dir(DATA / "valid")


def test_malformed_directory_reports_every_issue_at_once():
    with pytest.raises(SpecError) as info:
        load_state_dir("tests/data/spec/invalid")
    d = "tests/data/spec/invalid/"
    assert info.value.issues == [
        SpecIssue(d + "a.yaml", 4, "resources.acelerators",
                  "unknown field 'acelerators'; did you mean 'accelerators'?"),
        SpecIssue(d + "a.yaml", 5, "resources.cpus", "must be positive, got -2"),
        SpecIssue(d + "a.yaml", 6, "num_nodes", "must be an integer, got 'two'"),
        SpecIssue(d + "a.yaml", 11, "resources.accelerators",
                  "must look like 'A100' or 'A100:8', got 'A100:x'"),
        SpecIssue(d + "b.yaml", 2, "name",
                  f"duplicate Cluster 'train': also defined at {d}a.yaml:2"),
        SpecIssue(d + "b.yaml", 6, "cluster",
                  "cluster 'trian' is not defined in this directory; did you mean 'train'?"),
        SpecIssue(d + "b.yaml", 9, "kind",
                  "missing 'kind' (one of Project, Cluster, Job, ManagedJob, Service) "
                  "(a SkyPilot task YAML? use it from a Job with 'from:')"),
        SpecIssue(d + "b.yaml", 12, "kind", "unknown kind 'Clustr'; did you mean 'Cluster'?"),
        SpecIssue(d + "d.yaml", 7, "num_nodes",
                  "num_nodes 4 exceeds the 1 node(s) of cluster 'small'"),
        SpecIssue(d + "d.yaml", 16, "num_nodes", "must be at least 1, got -1"),
        SpecIssue(d + "d.yaml", 17, "power", "unknown field 'power'"),
        SpecIssue(d + "sub/c.yaml", 3, "",
                  "invalid YAML: mapping values are not allowed in this context (column 6)"),
        SpecIssue(d + "tasks/bad.sky.yaml", 3, "resources.accelerator",
                  "unknown field 'accelerator'; did you mean 'accelerators'?"),
    ]


def test_spec_error_text_is_one_line_per_issue_without_pydantic_noise():
    with pytest.raises(SpecError) as info:
        load_state_dir("tests/data/spec/invalid")
    text = str(info.value)
    assert len(text.splitlines()) == len(info.value.issues)
    assert "errors.pydantic.dev" not in text and "Value error" not in text
    assert "For further information" not in text
    assert isinstance(info.value, ValueError)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_missing_and_empty_directories_are_clear_errors(tmp_path: Path):
    with pytest.raises(SpecError, match="state directory not found"):
        load_state_dir(tmp_path / "nope")
    with pytest.raises(SpecError, match=r"no \*.yaml or \*.yml files"):
        load_state_dir(tmp_path)


def test_owner_defaults_to_sanitised_directory_name(tmp_path: Path):
    root = tmp_path / "My_Team.Dir"
    write(root, "c.yaml", "kind: Cluster\nname: a\n")
    state = load_state_dir(root)
    assert state.owner == "my-team-dir" == state.project.name
    assert owner_from_dir("/x/9lives") == "p-9lives"


def test_skystate_yaml_without_kind_is_the_project(tmp_path: Path):
    write(tmp_path, "skystate.yaml", "name: lab\ndefaults: {autostop: 15}\n")
    write(tmp_path, "c.yml", "kind: Cluster\nname: a\n")
    state = load_state_dir(tmp_path)
    assert state.owner == "lab"
    assert state.clusters["a"].autostop is not None
    assert state.clusters["a"].autostop.idle_minutes == 15


def test_two_projects_are_rejected_naming_both(tmp_path: Path):
    write(tmp_path, "a.yaml", "kind: Project\nname: one\n")
    write(tmp_path, "b.yaml", "kind: Cluster\nname: c\n---\nkind: Project\nname: two\n")
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    (issue,) = info.value.issues
    assert issue.line == 4 and issue.file.endswith("b.yaml")
    assert "a.yaml:1" in issue.message


def test_jobs_with_same_name_on_different_clusters_are_distinct(tmp_path: Path):
    write(tmp_path, "s.yaml", "\n---\n".join([
        "kind: Cluster\nname: a", "kind: Cluster\nname: b",
        "kind: Job\nname: j\ncluster: a\nrun: x", "kind: Job\nname: j\ncluster: b\nrun: y",
    ]))
    assert len(load_state_dir(tmp_path).jobs) == 2
    write(tmp_path, "t.yaml", "kind: Job\nname: j\ncluster: a\nrun: z\n")
    with pytest.raises(SpecError, match="duplicate job 'j' on cluster 'a'"):
        load_state_dir(tmp_path)


def test_missing_name_points_at_the_document_start(tmp_path: Path):
    write(tmp_path, "c.yaml", "kind: Cluster\nname: ok\n---\n# comment\nkind: Cluster\n")
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    (issue,) = info.value.issues
    assert (issue.line, issue.field, issue.message) == (5, "name", "missing required field 'name'")


def test_from_missing_file_is_reported_at_the_from_key(tmp_path: Path):
    write(tmp_path, "j.yaml", "kind: ManagedJob\nname: m\nfrom: nope.yaml\n")
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (3, "from")
    assert "'nope.yaml' not found" in issue.message


def test_a_single_file_can_be_loaded(tmp_path: Path):
    path = write(tmp_path, "one.yaml", "kind: Cluster\nname: solo\n")
    assert list(load_state_dir(path).clusters) == ["solo"]


def test_file_names_are_absolute_outside_the_cwd(tmp_path: Path):
    write(tmp_path, "c.yaml", "kind: Cluster\nname: BAD\n")
    with pytest.raises(SpecError) as info:
        load_state_dir(tmp_path)
    assert info.value.issues[0].file == os.path.join(str(tmp_path), "c.yaml")
