"""Which providers a resources block without ``infra`` is optimized over (docs/optimizer.md).

As in SkyPilot, no ``infra`` means "any enabled provider". Whether a provider is enabled is
decided from configuration, environment variables and files only — no network call, no
cloud library imported — because every plan asks:

- ``local``: always, with what its inventory offers (no accelerators unless
  ``providers.local.accelerators`` lists some).
- ``ssh``: when ``providers.ssh.pools`` lists at least one pool.
- ``aws``: boto3 installed and credentials present in the parts of boto3's chain that need
  no network: ``AWS_ACCESS_KEY_ID``+``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, a web
  identity token file, container credentials variables, or a shared credentials/config
  file (``~/.aws/credentials``, ``~/.aws/config`` or their ``AWS_*_FILE`` overrides).
  The instance metadata service (an EC2 instance role) is not consulted: such a host uses
  ``infra: aws`` explicitly, or sets ``AWS_PROFILE``/keys.
- ``gcp``: google-auth installed (or an ``api_endpoint`` configured, which needs no
  credentials), Application Default Credentials as a file
  (``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's ``application_default_credentials.json``;
  not the GCE metadata server), and a project (``providers.gcp.project``,
  ``GOOGLE_CLOUD_PROJECT`` or ``CLOUDSDK_CORE_PROJECT``).

``skystate check`` goes further (it asks boto3/google-auth themselves and probes a
configured test endpoint); this is the cheap rule a plan can afford.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORDER = ("local", "ssh", "aws", "gcp")


@dataclass(frozen=True)
class Enabled:
    """The providers considered for a request without infra, and why the others are not."""

    considered: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why not enabled

    def describe(self) -> str:
        """``considered local, aws; not enabled: ssh (no pools configured), gcp (...)``."""
        text = "considered " + ", ".join(self.considered)
        if self.skipped:
            text += "; not enabled: " + ", ".join(f"{name} ({why})"
                                                  for name, why in self.skipped.items())
        return text


def enabled_providers(config: Mapping[str, Any],
                      environ: Mapping[str, str] | None = None) -> Enabled:
    """Apply the rule above to a ``providers:`` config (a Project's or config.yaml's)."""
    env = os.environ if environ is None else environ
    considered: list[str] = []
    skipped: dict[str, str] = {}
    for name in ORDER:
        why_not = _WHY_NOT[name](dict(config.get(name) or {}), env)
        if why_not:
            skipped[name] = why_not
        else:
            considered.append(name)
    return Enabled(tuple(considered), skipped)


def _local(section: Mapping[str, Any], env: Mapping[str, str]) -> str:
    return ""


def _ssh(section: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if not section.get("pools"):
        return "no pools configured"
    return "" if _installed("fabric") else "fabric is not installed (pip install 'skystate[ssh]')"


def _aws(section: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if not _installed("boto3"):
        return "boto3 is not installed (pip install 'skystate[aws]')"
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return ""
    if env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE") or env.get(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return ""
    home = Path(env.get("HOME") or Path.home())
    files = (env.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / ".aws" / "credentials"),
             env.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config"))
    if any(Path(f).expanduser().is_file() for f in files):
        return ""
    return "no credentials found in the environment or ~/.aws"


def _gcp(section: Mapping[str, Any], env: Mapping[str, str]) -> str:
    project = (section.get("project") or env.get("GOOGLE_CLOUD_PROJECT")
               or env.get("CLOUDSDK_CORE_PROJECT"))
    if not _installed("google.cloud.compute_v1"):
        return "google-cloud-compute is not installed (pip install 'skystate[gcp]')"
    if not section.get("api_endpoint"):
        home = Path(env.get("HOME") or Path.home())
        gcloud = Path(env.get("CLOUDSDK_CONFIG") or home / ".config" / "gcloud")
        files = [env.get("GOOGLE_APPLICATION_CREDENTIALS") or "",
                 str(gcloud / "application_default_credentials.json")]
        if not any(f and Path(f).expanduser().is_file() for f in files):
            return "no Application Default Credentials file"
    if not project:
        return "no project (providers.gcp.project or GOOGLE_CLOUD_PROJECT)"
    return ""


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    ``find_spec`` of a dotted name imports its parents, and raises (rather than returning
    None) when a parent such as ``google`` is missing: that is the fresh-machine case.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_WHY_NOT = {"local": _local, "ssh": _ssh, "aws": _aws, "gcp": _gcp}
