"""SkyPilot's ``examples/multi_echo.py`` pattern, runnable unchanged on SkyPilot or on
skystate (with ``sky`` importing skystate, see docs/sdk.md): a 2-node cluster with one T4
per node, then many fractional-GPU jobs submitted from threads and packed on both nodes.

    python tests/data/skypilot/multi_echo.py CLUSTER [JOBS]

Each job waits at a barrier (``$MULTI_ECHO_DIR``: every job touches a file there, then
waits until all JOBS files exist), so the jobs can only succeed if they all run at once.
"""

import os
import sys
from multiprocessing import pool

import sky

cluster = sys.argv[1] if len(sys.argv) > 1 else "test-multi-echo"
jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
barrier = os.environ.get("MULTI_ECHO_DIR", "/tmp/multi-echo")
os.makedirs(barrier, exist_ok=True)

with sky.Dag() as dag:
    # Launch the cluster: two nodes, one T4 each.
    task = sky.Task(setup='echo "running setup"', num_nodes=2)
    task.set_resources(sky.Resources(accelerators={"T4": 1}))

sky.stream_and_get(sky.launch(dag, cluster_name=cluster))


def _exec(i):
    run = (f'echo "{i} rank=$SKYPILOT_NODE_RANK ips=$SKYPILOT_NODE_IPS '
           f'gpu=$CUDA_VISIBLE_DEVICES"; '
           f'touch {barrier}/{i}.$(basename $(dirname $HOME)); '
           f'for t in $(seq 1500); do '
           f'[ $(ls {barrier} | wc -l) -ge {jobs} ] && exit 0; sleep 0.2; done; exit 1')
    task = sky.Task(run=run)
    task.set_resources(sky.Resources(accelerators={"T4": 0.1}))
    job_id, _ = sky.stream_and_get(sky.exec(task, cluster_name=cluster))
    print(f"task {i} is job {job_id}", flush=True)


# Submit many tasks in parallel to exercise the job queue.
with pool.ThreadPool(8) as p:
    list(p.imap(_exec, range(jobs)))
print("all submitted", flush=True)
