"""The seed SDK example, verbatim apart from the import and infra='local'.

    python examples/sdk_seed.py
"""

import skystate as sky

task = sky.Task(run="echo hello SkyPilot")
task.set_resources(sky.Resources(infra="local"))
job_id, handle = sky.get(sky.launch(task, cluster_name="my-cluster"))
print(f"job {job_id} on {handle.cluster_name} (head {handle.head_ip})")
exit_code = sky.tail_logs("my-cluster", job_id, follow=True)
sky.get(sky.down("my-cluster"))
raise SystemExit(exit_code)
