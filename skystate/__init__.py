"""skystate: declarative GPU clusters, jobs and services from checked-in YAML.

``import skystate as sky`` gives the SkyPilot-compatible SDK. Everything is imported
lazily so that ``import skystate`` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "exceptions": "skystate.exceptions",
    "ClusterStatus": "skystate.enums",
    "JobStatus": "skystate.enums",
    "StatusRefreshMode": "skystate.enums",
    "OptimizeTarget": "skystate.enums",
    "Resources": "skystate.spec.resources",
    "Task": "skystate.spec.task",
    "Dag": "skystate.spec.dag",
    "Storage": "skystate.spec.storage",
    "StorageMode": "skystate.spec.storage",
    "StoreType": "skystate.spec.storage",
    "AWS": "skystate.spec.clouds",
    "GCP": "skystate.spec.clouds",
    "Local": "skystate.spec.clouds",
    "SSH": "skystate.spec.clouds",
    "Kubernetes": "skystate.spec.clouds",
    "JobExitCode": "skystate.exceptions",
    "jobs": "skystate.jobs",
    "serve": "skystate.serve",
    "ServiceStatus": "skystate.serve.status",
    **{
        name: "skystate.sdk"
        for name in (
            "launch", "exec", "queue", "job_status", "tail_logs", "download_logs", "cancel",
            "autostop", "stop", "start", "down", "status", "plan", "apply", "get",
            "stream_and_get", "api_status", "api_cancel", "api_info", "api_start", "api_stop",
            "refresh",
        )
    },
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'skystate' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith(name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
