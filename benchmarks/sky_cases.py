"""Writes the SkyPilot-compatibility cases under tests/data/sky_compat/ (dev only).

    python benchmarks/sky_cases.py && python benchmarks/sky_diff.py --record

Each case is a small task YAML written as text (so flow maps, sets and odd spellings stay
as a user would write them). A case whose first line is ``# expect: X`` must, when
rejected, be rejected with an error naming X. Existing files are overwritten; the
``service/`` folder belongs to the service cases and is left alone.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tests" / "data" / "sky_compat"

SKY_CLOUDS = (
    "aws", "azure", "gcp", "ibm", "lambda", "scp", "oci", "kubernetes", "runpod", "vast",
    "vsphere", "cudo", "fluidstack", "paperspace", "primeintellect", "do", "nebius", "ssh",
    "slurm", "hyperbolic", "seeweb", "shadeform", "yotta", "mithril", "verda",
)


def res(body: str, expect: str = "") -> str:
    head = f"# expect: {expect}\n" if expect else ""
    lines = "".join(f"  {line}\n" for line in body.strip("\n").split("\n"))
    return f"{head}resources:\n{lines}run: echo hi\n"


def task(body: str, expect: str = "") -> str:
    head = f"# expect: {expect}\n" if expect else ""
    return head + body.strip("\n") + "\n"


def cases() -> dict[str, str]:
    c: dict[str, str] = {}
    # --- cloud ---------------------------------------------------------------------------
    for cloud in SKY_CLOUDS:
        c[f"cloud/{cloud}"] = res(f"cloud: {cloud}")
    c["cloud/upper"] = res("cloud: AWS")
    c["cloud/mixed"] = res("cloud: Gcp")
    for bad in ("awss", "gpc", "azur", "k8s", "lamda", "nope", "''"):
        c[f"cloud/bad-{bad.strip(chr(39)) or 'empty'}"] = res(f"cloud: {bad}", "cloud")
    c["cloud/number"] = res("cloud: 3", "cloud")
    c["cloud/list"] = res("cloud: [aws, gcp]", "cloud")
    c["cloud/null"] = res("cloud: null")
    c["cloud/region"] = res("cloud: aws\nregion: us-east-1")
    c["cloud/region-zone"] = res("cloud: aws\nregion: us-east-1\nzone: us-east-1a")
    c["cloud/gcp-zone"] = res("cloud: gcp\nregion: us-central1\nzone: us-central1-a")
    c["cloud/region-only"] = res("region: us-east-1")
    c["cloud/region-number"] = res("cloud: aws\nregion: 5", "region")
    c["cloud/zone-number"] = res("cloud: aws\nzone: 5", "zone")
    c["cloud/k8s-region"] = res("cloud: kubernetes\nregion: my-context")
    # --- infra ---------------------------------------------------------------------------
    for i, infra in enumerate((
        "aws", "aws/us-east-1", "aws/us-east-1/us-east-1a", "gcp/us-central1",
        "gcp/us-central1/us-central1-a", "azure/eastus", "'*'", "'*/us-east-1'",
        "'*/*/us-east-1a'", "'aws/*/us-east-1a'", "k8s", "kubernetes", "k8s/my-ctx",
        "kubernetes/ctx/with/slashes", "k8s/aws:eks:us-east-1:1234:cluster/c1", "ssh/lab",
        "ssh", "AWS/us-east-1", "nebius/eu-north1", "runpod/US", "lambda/us-east-1",
        "slurm/mycluster", "K8S/ctx",
    )):
        c[f"infra/ok-{i:02d}"] = res(f"infra: {infra}")
    for i, infra in enumerate((
        "awss", "aws/us-east-1/us-east-1a/extra", "aws/", "/us-east-1", "''", "aws//x",
        "local", "gcpp/us-central1", "3", "[aws]", "'*/'", "'**'",
    )):
        c[f"infra/bad-{i:02d}"] = res(f"infra: {infra}", "infra")
    c["infra/with-cloud"] = res("infra: aws\ncloud: aws")
    c["infra/with-region"] = res("infra: aws\nregion: us-east-1")
    c["infra/with-zone"] = res("infra: aws/us-east-1\nzone: us-east-1a")
    c["infra/null"] = res("infra: null\ncpus: 2")
    # --- cpus / memory -------------------------------------------------------------------
    for i, v in enumerate(("4", "'4'", "4+", "'4+'", "0.5", "'0.5+'", "64", "1", "'8'", "2.0")):
        c[f"cpus/ok-{i:02d}"] = res(f"cpus: {v}")
    for i, v in enumerate(("0", "-1", "abc", "'4++'", "true", "[4]", "'+4'", "'4 +'", "{a: 1}",
                           "''", "'-2+'", "'0+'")):
        c[f"cpus/bad-{i:02d}"] = res(f"cpus: {v}", "cpus")
    for i, v in enumerate(("16", "'16+'", "0.5", "'32'", "1", "'64+'", "16GB", "'16gb+'",
                           "1TB", "'8GB'", "512MB", "'1.5'")):
        c[f"memory/ok-{i:02d}"] = res(f"memory: {v}")
    for i, v in enumerate(("0", "-8", "lots", "true", "[16]", "'16++'", "16XB", "''", "'0+'")):
        c[f"memory/bad-{i:02d}"] = res(f"memory: {v}", "memory")
    # --- accelerators --------------------------------------------------------------------
    for i, v in enumerate((
        "A100", "A100:8", "'A100:8'", "V100:1", "H100:8", "T4:0.5", "L4:1", "A10G:4",
        "{A100: 8}", "{A100: 1}", "{A100: null}", "{A100: 0.25}", "'{L4:1, A10G:1}'",
        "{L4:1, A10G:1}", "{'A100:1', 'V100:1'}", "{A10:1}", "{L4:1}", "[A100, V100]",
        "['A100:1', 'V100:2']", "[A100]", "['H100:8']", "{A100: 8, H100: 8}",
        "{V100: 1, T4: 1, K80: 1}", "[T4, L4, A10G]", "'H100:8 '", "{'A100:8'}",
        "{A100:8, H100:8}", "RTX4090:2", "a100:2", "A100-80GB:8", "{A100: 8, A100-80GB: 4}",
        "tpu-v2-8", "null", "[A100, A100]", "{'A100', 'V100'}", "A100:1.5",
    )):
        c[f"accelerators/ok-{i:02d}"] = res(f"accelerators: {v}")
    for i, v in enumerate((
        "A100:x", "A100:-1", "A100:0", "{A100: '8'}", "[A100, 1]", "{A100: -1}", "{A100: 0}",
        "true", "8", "{A100: [1]}", "'A100:'", "'A100:8:2'", "''", "':8'", "[[A100]]",
        "{A100: true}", "[]",
    )):
        c[f"accelerators/bad-{i:02d}"] = res(f"accelerators: {v}", "accelerators")
    c["accelerators/with-args"] = res(
        "accelerators: tpu-v3-8\naccelerator_args:\n  runtime_version: tpu-vm-base\n"
        "  tpu_vm: true")
    c["accelerators/args-bad-key"] = res(
        "accelerators: tpu-v3-8\naccelerator_args:\n  runtim_version: x", "runtim_version")
    c["accelerators/args-bad-type"] = res(
        "accelerators: tpu-v3-8\naccelerator_args:\n  tpu_vm: maybe", "tpu_vm")
    c["accelerators/args-queued"] = res(
        "accelerators: tpu-v3-8\naccelerator_args:\n  gcp_queued_resource: true\n"
        "  tpu_name: mytpu")
    c["accelerators/cloud"] = res("cloud: aws\naccelerators: NOTAGPU:1")
    c["accelerators/infra"] = res("infra: gcp\naccelerators: {L4: 1, A100: 1}")
    c["accelerators/spot"] = res("accelerators: [A100, V100]\nuse_spot: true")
    # gpus: is an alias of accelerators
    c["gpus/str"] = res("gpus: A100:8")
    c["gpus/map"] = res("gpus: {A100: 8}")
    c["gpus/list"] = res("gpus: [A100, H100]")
    c["gpus/set"] = res("gpus: {L4:1, A10G:1}")
    c["gpus/both"] = res("gpus: A100\naccelerators: A100", "gpus")
    c["gpus/bad"] = res("gpus: A100:x", "gpus")
    c["gpus/in-any-of"] = res("any_of:\n  - gpus: A100\n  - gpus: H100")
    c["gpus/in-ordered"] = res("ordered:\n  - gpus: A100:8\n  - accelerators: H100:8")
    # --- any_of / ordered ----------------------------------------------------------------
    c["multi/any-of-clouds"] = res("any_of:\n  - infra: aws\n  - infra: gcp")
    c["multi/any-of-cloud-field"] = res("any_of:\n  - cloud: aws\n  - cloud: gcp")
    c["multi/ordered-regions"] = res(
        "ordered:\n  - infra: aws/us-east-1\n  - infra: aws/us-west-2")
    c["multi/any-of-base"] = res("cpus: 4+\nany_of:\n  - infra: aws\n  - infra: gcp")
    c["multi/ordered-base"] = res("accelerators: A100:8\nordered:\n  - infra: gcp\n"
                                  "  - infra: aws")
    c["multi/any-of-accels"] = res(
        "any_of:\n  - accelerators: A100:8\n  - accelerators: H100:8")
    c["multi/any-of-override"] = res("cpus: 4\nany_of:\n  - cpus: 8\n  - {}")
    c["multi/any-of-labels"] = res(
        "labels: {team: a}\nany_of:\n  - infra: aws\n  - labels: {env: x}")
    c["multi/any-of-labels-one"] = res("labels: {team: a}\nany_of:\n  - labels: {env: x}")
    c["multi/set-x-any-of"] = res(
        "accelerators: {A100: 1, V100: 1}\nany_of:\n  - infra: aws\n  - infra: gcp")
    c["multi/flowset-x-any-of"] = res(
        "accelerators: {'A100:1', 'V100:1'}\nany_of:\n  - infra: aws\n  - infra: gcp")
    c["multi/list-x-any-of"] = res(
        "accelerators: [A100, V100]\nany_of:\n  - infra: aws\n  - infra: gcp",
        "accelerators")
    c["multi/one-list-x-any-of"] = res(
        "accelerators: [A100]\nany_of:\n  - infra: aws\n  - infra: gcp")
    c["multi/set-x-ordered"] = res(
        "accelerators: {A100: 1, V100: 1}\nordered:\n  - infra: aws\n  - infra: gcp",
        "accelerators")
    c["multi/list-x-ordered"] = res(
        "accelerators: [A100, V100]\nordered:\n  - infra: aws\n  - infra: gcp",
        "accelerators")
    c["multi/one-x-ordered"] = res(
        "accelerators: {A100: 1}\nordered:\n  - infra: aws\n  - infra: gcp")
    c["multi/entry-set"] = res(
        "any_of:\n  - accelerators: {A100: 1, V100: 1}\n  - infra: gcp")
    c["multi/entry-list"] = res(
        "any_of:\n  - accelerators: [A100, V100]\n  - infra: gcp", "accelerators")
    c["multi/ordered-entry-set"] = res(
        "ordered:\n  - accelerators: {A100: 1, V100: 1}\n  - infra: gcp")
    c["multi/both"] = res("any_of:\n  - infra: aws\nordered:\n  - infra: gcp", "ordered")
    c["multi/nested"] = res("any_of:\n  - any_of:\n      - infra: aws", "any_of")
    c["multi/nested-ordered"] = res("ordered:\n  - ordered:\n      - infra: aws", "ordered")
    c["multi/empty"] = res("any_of: []\ncpus: 2")
    c["multi/empty-ordered"] = res("ordered: []\ncpus: 2")
    c["multi/not-list"] = res("any_of: {infra: aws}", "any_of")
    c["multi/entry-not-map"] = res("any_of:\n  - aws", "any_of")
    c["multi/entry-unknown"] = res("any_of:\n  - infra: aws\n    cpu: 4", "cpu")
    c["multi/entry-bad-cpus"] = res("any_of:\n  - cpus: lots", "cpus")
    c["multi/base-cloud-entry-infra"] = res("cloud: aws\nany_of:\n  - infra: gcp", "infra")
    c["multi/base-infra-entry-cloud"] = res("infra: aws\nany_of:\n  - cloud: gcp", "infra")
    c["multi/base-infra-entry-infra"] = res("infra: aws\nany_of:\n  - infra: gcp")
    c["multi/base-cloud-entry-region"] = res(
        "cloud: aws\nany_of:\n  - region: us-east-1\n  - region: us-west-2")
    c["multi/single-entry"] = res("any_of:\n  - infra: aws")
    c["multi/duplicate-entries"] = res("any_of:\n  - infra: aws\n  - infra: aws")
    c["multi/ordered-duplicates"] = res("ordered:\n  - infra: aws\n  - infra: aws")
    c["multi/any-of-spot"] = res("any_of:\n  - use_spot: true\n  - use_spot: false")
    c["multi/gpus-both-in-entry"] = res("any_of:\n  - gpus: A100\n    accelerators: A100",
                                        "gpus")
    # --- use_spot, instance_type, disk ---------------------------------------------------
    c["spot/true"] = res("use_spot: true")
    c["spot/false"] = res("use_spot: false")
    for i, v in enumerate(("yes-please", "1", "'true'", "[true]")):
        c[f"spot/bad-{i}"] = res(f"use_spot: {v}", "use_spot")
    c["instance/type"] = res("instance_type: p3.2xlarge")
    c["instance/number"] = res("instance_type: 3", "instance_type")
    c["instance/cpus"] = res("instance_type: n1-standard-8\ncpus: 8")
    for i, v in enumerate(("100", "'100'", "100GB", "1TB", "'512'", "256", "'256GB'",
                           "100gb", "2048", "1tb", "50")):
        c[f"disk/ok-{i:02d}"] = res(f"disk_size: {v}")
    for i, v in enumerate(("0", "-5", "abc", "100.5", "'100 GB'", "true", "[100]", "'1.5TB'",
                           "''")):
        c[f"disk/bad-{i:02d}"] = res(f"disk_size: {v}", "disk_size")
    for tier in ("low", "medium", "high", "ultra", "best", "HIGH", "Best"):
        c[f"disk/tier-{tier}"] = res(f"disk_tier: {tier}")
    c["disk/tier-bad"] = res("disk_tier: fast", "disk_tier")
    c["disk/tier-number"] = res("disk_tier: 3", "disk_tier")
    for tier in ("standard", "best", "BEST"):
        c[f"network/tier-{tier}"] = res(f"network_tier: {tier}")
    c["network/tier-bad"] = res("network_tier: fast", "network_tier")
    c["disk/local"] = res("local_disk: nvme")
    c["disk/local-number"] = res("local_disk: 3", "local_disk")
    c["disk/ephemeral"] = res("ephemeral_storage: 100")
    c["disk/ephemeral-str"] = res("ephemeral_storage: 100GB")
    c["disk/ephemeral-bad"] = res("ephemeral_storage: lots", "ephemeral_storage")
    # --- ports ---------------------------------------------------------------------------
    for i, v in enumerate(("8080", "'8080'", "[8080, 8081]", "'8000-8010'", "[8080, '9000-9010']",
                           "'8000,9000'", "null", "1", "65535", "[22]", "'80, 443'")):
        c[f"ports/ok-{i:02d}"] = res(f"ports: {v}")
    for i, v in enumerate(("0", "70000", "abc", "'10-5'", "[8080, abc]", "true", "{a: 1}",
                           "'-1'", "[0]", "'8000-70000'")):
        c[f"ports/bad-{i:02d}"] = res(f"ports: {v}", "ports")
    # --- labels, image_id ----------------------------------------------------------------
    c["labels/ok"] = res("labels: {team: ml, env: prod}")
    c["labels/number"] = res("labels: {team: 1}", "labels")
    c["labels/list"] = res("labels: [a, b]", "labels")
    c["labels/empty"] = res("labels: {}")
    c["image/str"] = res("image_id: ami-123456")
    c["image/docker"] = res("image_id: docker:ubuntu:22.04")
    c["image/dict"] = res("cloud: aws\nimage_id:\n  us-east-1: ami-1\n  us-west-2: ami-2")
    c["image/null"] = res("image_id: null")
    c["image/number"] = res("image_id: 3", "image_id")
    c["image/list"] = res("image_id: [a]", "image_id")
    # --- job_recovery --------------------------------------------------------------------
    c["recovery/str"] = res("job_recovery: failover")
    c["recovery/upper"] = res("job_recovery: EAGER_NEXT_REGION")
    c["recovery/none"] = res("job_recovery: none")
    c["recovery/dict"] = res("job_recovery:\n  strategy: failover\n  max_restarts_on_errors: 3")
    c["recovery/restarts-only"] = res("job_recovery:\n  max_restarts_on_errors: 2")
    c["recovery/null-strategy"] = res("job_recovery:\n  strategy: null")
    c["recovery/exit-code"] = res("job_recovery:\n  recover_on_exit_codes: 3")
    c["recovery/exit-codes"] = res("job_recovery:\n  recover_on_exit_codes: [1, 2]")
    c["recovery/bad-restarts"] = res("job_recovery:\n  max_restarts_on_errors: -1",
                                     "max_restarts_on_errors")
    c["recovery/bad-restarts-type"] = res("job_recovery:\n  max_restarts_on_errors: many",
                                          "max_restarts_on_errors")
    c["recovery/bad-exit-code"] = res("job_recovery:\n  recover_on_exit_codes: 300",
                                      "recover_on_exit_codes")
    c["recovery/dup-exit-codes"] = res("job_recovery:\n  recover_on_exit_codes: [1, 1]",
                                       "recover_on_exit_codes")
    c["recovery/neg-exit-code"] = res("job_recovery:\n  recover_on_exit_codes: [-1]",
                                      "recover_on_exit_codes")
    c["recovery/number"] = res("job_recovery: 3", "job_recovery")
    c["recovery/spot-recovery"] = res("spot_recovery: failover", "job_recovery")
    c["recovery/spot-recovery-dict"] = res("spot_recovery:\n  strategy: failover",
                                           "job_recovery")
    # --- autostop ------------------------------------------------------------------------
    for i, v in enumerate(("10", "0", "'10m'", "2h", "1d", "true", "false", "'30s'",
                           "{idle_minutes: 5}", "{idle_minutes: 5, down: true}",
                           "{down: true}", "{wait_for: jobs}", "{wait_for: JOBS_AND_SSH}",
                           "{wait_for: none}", "{}", "1w")):
        c[f"autostop/ok-{i:02d}"] = res(f"autostop: {v}")
    for i, v in enumerate(("abc", "{idle_minutes: -1}", "{idle_minutes: '5'}",
                           "{wait_for: never}", "{down: maybe}", "{idle: 5}", "[5]", "'5x'",
                           "{hook_timeout: 0}")):
        c[f"autostop/bad-{i:02d}"] = res(f"autostop: {v}", "autostop")
    # --- priority, cost, misc ------------------------------------------------------------
    for i, v in enumerate(("0", "1000", "-1000", "500", "-5")):
        c[f"priority/ok-{i}"] = res(f"priority: {v}")
    for i, v in enumerate(("1001", "-1001", "'5'", "high", "1.5")):
        c[f"priority/bad-{i}"] = res(f"priority: {v}", "priority")
    c["priority/class"] = res("priority_class: high")
    c["priority/class-number"] = res("priority_class: 3", "priority_class")
    c["cost/ok"] = res("max_hourly_cost: 2.5")
    c["cost/int"] = res("max_hourly_cost: 3")
    c["cost/zero"] = res("max_hourly_cost: 0", "max_hourly_cost")
    c["cost/neg"] = res("max_hourly_cost: -1", "max_hourly_cost")
    c["cost/str"] = res("max_hourly_cost: cheap", "max_hourly_cost")
    c["volumes/resources"] = res("volumes:\n  - path: /mnt/data\n    name: vol1\n"
                                 "    disk_size: 100\n    disk_tier: best")
    c["volumes/resources-bad"] = res("volumes:\n  - path: 3", "volumes")
    c["internal/no-missing"] = res("_no_missing_accel_warnings: true")
    c["internal/fuse"] = res("_requires_fuse: true")
    c["internal/managed"] = res("_is_image_managed: false")
    c["internal/overrides"] = res("_cluster_config_overrides: {}")
    c["internal/docker-login"] = res("_docker_login_config:\n  username: u\n  password: p\n"
                                     "  server: s")
    c["internal/docker-login-missing"] = res("_docker_login_config:\n  username: u",
                                             "_docker_login_config")
    # unknown or removed resources fields
    for i, (v, want) in enumerate((
        ("acclerators: A100", "accelerators"), ("cpu: 4", "cpus"), ("mem: 16", "memory"),
        ("gpu: A100", "gpus"), ("spot: true", "use_spot"), ("disk: 100", "disk"),
        ("port: 8080", "ports"), ("instance: x", "instance_type"), ("regoin: x", "region"),
        ("hooks: []", "hooks"), ("foo: bar", "foo"), ("autostop_minutes: 5", "autostop"),
        ("image: x", "image_id"), ("label: {a: b}", "labels"),
    )):
        c[f"unknown/res-{i:02d}"] = res(v, want)
    c["resources/empty"] = task("resources: {}\nrun: echo hi")
    c["resources/null"] = task("resources:\nrun: echo hi")
    c["resources/list"] = task("resources:\n  - cpus: 2\nrun: echo hi", "resources")
    c["resources/str"] = task("resources: big\nrun: echo hi", "resources")
    c["resources/everything"] = res(
        "infra: aws/us-east-1\ncpus: 8+\nmemory: 32+\naccelerators: A100:1\nuse_spot: true\n"
        "disk_size: 500\ndisk_tier: high\nports: 8080\nlabels: {a: b}\njob_recovery: failover\n"
        "autostop: 30\npriority: 10")
    # --- task fields ---------------------------------------------------------------------
    c["task/empty"] = ""
    c["task/only-run"] = task("run: echo hi")
    c["task/comment-only"] = task("# nothing")
    c["task/name"] = task("name: train\nrun: echo hi")
    c["task/name-dots"] = task("name: my.task-1_a\nrun: echo hi")
    c["task/name-number"] = task("name: 3\nrun: x", "name")
    c["task/name-space"] = task("name: 'my task'\nrun: x", "name")
    c["task/name-leading-dash"] = task("name: -train\nrun: x", "name")
    c["task/name-triple-dash"] = task("name: a---b\nrun: x", "name")
    c["task/name-trailing-underscore"] = task("name: train_\nrun: x", "name")
    c["task/name-upper"] = task("name: Train\nrun: x")
    c["task/name-null"] = task("name: null\nrun: x")
    c["task/run-list"] = task("run: [echo a, echo b]", "run")
    c["task/run-multiline"] = task("run: |\n  echo a\n  echo b")
    c["task/run-number"] = task("run: 3", "run")
    c["task/run-null"] = task("run: null")
    c["task/setup"] = task("setup: pip install x\nrun: python x.py")
    c["task/setup-list"] = task("setup: [a, b]", "setup")
    c["task/setup-map"] = task("setup: {a: b}", "setup")
    for i, v in enumerate(("1", "2", "16", "null")):
        c[f"task/num-nodes-ok-{i}"] = task(f"num_nodes: {v}\nrun: x")
    for i, v in enumerate(("0", "-1", "'2'", "1.5", "true", "many")):
        c[f"task/num-nodes-bad-{i}"] = task(f"num_nodes: {v}\nrun: x", "num_nodes")
    c["task/workdir"] = task("workdir: .\nrun: x")
    c["task/workdir-git"] = task("workdir:\n  url: https://github.com/a/b\n  ref: main\nrun: x")
    c["task/workdir-git-no-url"] = task("workdir:\n  ref: main\nrun: x", "url")
    c["task/workdir-git-extra"] = task("workdir:\n  url: x\n  branch: main\nrun: x", "branch")
    c["task/workdir-number"] = task("workdir: 3\nrun: x", "workdir")
    c["task/workdir-env"] = task("envs:\n  D: /tmp\nworkdir: ${D}\nrun: x")
    c["task/event-callback"] = task("event_callback: echo done\nrun: x")
    c["task/event-callback-bad"] = task("event_callback: [a]\nrun: x", "event_callback")
    c["task/inputs"] = task("inputs:\n  s3://bucket/x: 10\nrun: x")
    c["task/inputs-two"] = task("inputs:\n  s3://a: 1\n  s3://b: 2\nrun: x", "inputs")
    c["task/inputs-str"] = task("inputs:\n  s3://a: big\nrun: x", "inputs")
    c["task/outputs"] = task("outputs:\n  s3://bucket/y: 1\nrun: x")
    c["task/config"] = task("config:\n  kubernetes:\n    pod_config: {}\nrun: x")
    c["task/config-hooks"] = task("config:\n  hooks:\n    - run: echo bye\n      events: [stop]\n"
                                  "run: x")
    c["task/config-hooks-bad-event"] = task(
        "config:\n  hooks:\n    - run: echo bye\n      events: [explode]\nrun: x", "hooks")
    c["task/config-hooks-no-run"] = task("config:\n  hooks:\n    - events: [stop]\nrun: x",
                                         "hooks")
    c["task/config-list"] = task("config: [a]\nrun: x", "config")
    c["task/volumes"] = task("volumes:\n  /mnt/data: my-volume\nrun: x")
    c["task/volumes-list"] = task("volumes: [a]\nrun: x", "volumes")
    c["task/api-server-access"] = task("api_server_access: true\nrun: x")
    c["task/api-server-access-bad"] = task("api_server_access: yes-please\nrun: x",
                                           "api_server_access")
    c["task/metadata"] = task("_metadata:\n  git_commit: abc\nrun: x")
    c["task/file-mounts-mapping"] = task("file_mounts_mapping: {}\nrun: x")
    c["task/pool"] = task("pool:\n  workers: 2\nrun: x")
    c["task/pool-bad"] = task("pool: 3\nrun: x", "pool")
    c["task/managed-secrets"] = task("managed_secrets: [HF_TOKEN]\nrun: x")
    c["task/managed-secrets-map"] = task(
        "managed_secrets:\n  - HF_TOKEN:\n      mount_path: /tmp/t\nrun: x")
    c["task/managed-secrets-bad"] = task("managed_secrets: HF_TOKEN\nrun: x", "managed_secrets")
    for i, (v, want) in enumerate((
        ("nodes: 2", "num_nodes"), ("env: {A: b}", "envs"), ("setups: x", "setup"),
        ("runs: x", "run"), ("resource: {cpus: 2}", "resources"), ("filemounts: {}", "file_mounts"),
        ("file_mount: {}", "file_mounts"), ("secret: {A: b}", "secrets"), ("names: x", "name"),
        ("workdirs: .", "workdir"), ("foo: 1", "foo"), ("docker_image: ubuntu", "docker_image"),
        ("kind: Job", "kind"), ("cluster: c", "cluster"),
    )):
        c[f"unknown/task-{i:02d}"] = task(f"{v}\nrun: x", want)
    c["task/not-mapping"] = task("- run: x", "mapping")
    c["task/string"] = task("just a string", "mapping")
    c["task/duplicate-key"] = task("run: a\nrun: b", "run")
    c["task/two-docs"] = task("run: a\n---\nrun: b")
    # --- envs / secrets ------------------------------------------------------------------
    c["envs/ok"] = task("envs:\n  A: x\n  B: y\nrun: x")
    c["envs/number"] = task("envs:\n  A: 1\n  B: 1.5\nrun: x")
    c["envs/bool"] = task("envs:\n  A: true\n  B: false\nrun: x")
    c["envs/empty-str"] = task("envs:\n  A: ''\nrun: x")
    c["envs/null"] = task("envs:\n  A:\nrun: x", "A")
    c["envs/null-explicit"] = task("envs:\n  A: null\n  B: x\nrun: x", "A")
    c["envs/two-null"] = task("envs:\n  A:\n  B:\nrun: x", "B")
    c["envs/bad-key"] = task("envs:\n  1A: x\nrun: x", "1A")
    c["envs/bad-key-dash"] = task("envs:\n  A-B: x\nrun: x", "A-B")
    c["envs/numeric-key"] = task("envs:\n  1: x\nrun: x", "envs")
    c["envs/list"] = task("envs: [A, B]\nrun: x", "envs")
    c["envs/str"] = task("envs: A=b\nrun: x", "envs")
    c["envs/nested"] = task("envs:\n  A: {b: c}\nrun: x", "A")
    c["envs/list-value"] = task("envs:\n  A: [1]\nrun: x", "A")
    c["envs/empty"] = task("envs: {}\nrun: x")
    c["envs/null-block"] = task("envs:\nrun: x")
    c["envs/underscore"] = task("envs:\n  _A_1: x\nrun: x")
    c["envs/multiline"] = task("envs:\n  A: |\n    line1\n    line2\nrun: x")
    c["secrets/ok"] = task("secrets:\n  TOKEN: abc\nrun: x")
    c["secrets/null"] = task("secrets:\n  TOKEN:\nrun: x")
    c["secrets/number"] = task("secrets:\n  TOKEN: 123\nrun: x")
    c["secrets/list-prefixed"] = task("secrets: ['secrets:HF_TOKEN']\nrun: x")
    c["secrets/list-bare"] = task("secrets: [HF_TOKEN]\nrun: x", "secrets")
    c["secrets/prefixed-key"] = task("secrets:\n  secrets:HF_TOKEN:\nrun: x")
    c["secrets/prefixed-key-value"] = task("secrets:\n  secrets:HF_TOKEN: abc\nrun: x",
                                           "secrets")
    c["secrets/str"] = task("secrets: abc\nrun: x", "secrets")
    c["secrets/with-envs"] = task("envs:\n  A: x\nsecrets:\n  B: y\nrun: x")
    c["secrets/empty"] = task("secrets: {}\nrun: x")
    # --- file_mounts ---------------------------------------------------------------------
    c["mounts/s3"] = task("file_mounts:\n  /data: s3://bucket/path\nrun: x")
    c["mounts/gcs"] = task("file_mounts:\n  ~/data: gs://bucket\nrun: x")
    c["mounts/local"] = task("file_mounts:\n  /remote/x: ./x\nrun: x")
    c["mounts/env-braces"] = task("envs:\n  B: mybucket\nfile_mounts:\n  /data/${B}: s3://${B}\n"
                                  "run: x")
    c["mounts/env-bare"] = task("envs:\n  B: mybucket\nfile_mounts:\n  /data/$B: s3://$B\nrun: x")
    c["mounts/env-unknown"] = task("file_mounts:\n  /data/${NOPE}: s3://b\nrun: x")
    c["mounts/secret-subst"] = task("secrets:\n  S: sec\nfile_mounts:\n  /d/${S}: s3://b\nrun: x")
    c["mounts/env-number"] = task("envs:\n  N: 3\nfile_mounts:\n  /d/v${N}: s3://b\nrun: x")
    c["mounts/dst-slash"] = task("file_mounts:\n  /data/: s3://b\nrun: x", "/data/")
    c["mounts/src-slash"] = task("file_mounts:\n  /data: ./x/\nrun: x", "/data")
    c["mounts/relative-dst"] = task("file_mounts:\n  data: s3://b\nrun: x")
    c["mounts/list"] = task("file_mounts: [a]\nrun: x", "file_mounts")
    c["mounts/number-src"] = task("file_mounts:\n  /a: 3\nrun: x", "/a")
    c["mounts/empty"] = task("file_mounts: {}\nrun: x")
    c["mounts/null"] = task("file_mounts:\nrun: x")
    c["mounts/two"] = task("file_mounts:\n  /a: s3://x\n  /b: gs://y\nrun: x")
    c["mounts/https"] = task("file_mounts:\n  /a: https://example.com/f\nrun: x")
    return c


def main() -> None:
    written = 0
    for name, text in cases().items():
        path = ROOT / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written += 1
    print(f"{written} cases written under {ROOT}")


if __name__ == "__main__":
    main()
