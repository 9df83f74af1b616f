"""``skystate check``: which providers are usable with the credentials present, and why not.

Each check imports only its own provider's library (boto3 for aws, google.auth for gcp,
never google.cloud.compute), and calls no cloud API except a configured test endpoint,
so the whole check takes a fraction of a second offline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Config = Mapping[str, Any]


@dataclass(frozen=True)
class ProviderCheck:
    """One provider's verdict: usable or not, and the reason a user can act on."""

    name: str
    usable: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_local(section: Config) -> ProviderCheck:
    accelerators = section.get("accelerators") or {}
    inventory = ", ".join(f"{k}:{v}" for k, v in accelerators.items()) or "no accelerators"
    return ProviderCheck("local", True, f"runs nodes as processes on this machine "
                                        f"(simulated inventory: {inventory})")


def check_ssh(section: Config) -> ProviderCheck:
    pools = section.get("pools") or {}
    if not pools:
        return ProviderCheck("ssh", False, "no pools configured (providers.ssh.pools in "
                                           "$SKYSTATE_HOME/config.yaml or a Project)")
    described, missing = [], []
    for name, pool in pools.items():
        described.append(f"{name} ({len(pool.get('hosts') or [])} host(s))")
        identity = pool.get("identity_file")
        if identity and not Path(identity).expanduser().is_file():
            missing.append(f"{name}: identity_file {identity} not found")
    if missing:
        return ProviderCheck("ssh", False, "; ".join(missing))
    return ProviderCheck("ssh", True, "pools " + ", ".join(described))


def check_aws(section: Config) -> ProviderCheck:
    """boto3's credential chain (env, profile, shared files, SSO, container, IMDS)."""
    try:
        import boto3
    except ImportError:
        return ProviderCheck("aws", False, "boto3 is not installed: pip install 'skystate[aws]'")
    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        return ProviderCheck("aws", False, (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run 'aws configure'"))
    source = f"credentials from {credentials.method}"
    endpoint = section.get("endpoint_url")
    if not endpoint:
        regions = section.get("regions")
        return ProviderCheck("aws", True, source + (
            f"; regions {', '.join(regions)}" if regions else "; all catalog regions"))
    problem = _probe_aws_endpoint(session, endpoint, section.get("regions"))
    if problem:
        return ProviderCheck("aws", False, f"{source}, but endpoint {endpoint}: {problem}")
    return ProviderCheck("aws", True, f"{source}; endpoint {endpoint} answers")


def _probe_aws_endpoint(session: Any, endpoint: str, regions: Sequence[str] | None) -> str:
    """'' if the configured endpoint answers DescribeRegions, else what went wrong."""
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError

    client = session.client(
        "ec2", endpoint_url=endpoint, region_name=(regions or ["us-east-1"])[0],
        config=BotoConfig(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))
    try:
        client.describe_regions()
    except (BotoCoreError, ClientError) as exc:
        return str(exc)
    return ""


def check_gcp(section: Config) -> ProviderCheck:
    """An ``api_endpoint`` (a test endpoint, no credentials) or Application Default Creds;
    either way a project from config or $GOOGLE_CLOUD_PROJECT, as the gcp provider needs."""
    endpoint = section.get("api_endpoint")
    project = (section.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT")
               or os.environ.get("CLOUDSDK_CORE_PROJECT"))
    detected = None
    if endpoint:
        source = f"api_endpoint {endpoint} configured (anonymous credentials)"
    else:
        try:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError
        except ImportError:
            return ProviderCheck("gcp", False, "google-auth is not installed: "
                                               "pip install 'skystate[gcp]'")
        try:
            _, detected = google.auth.default()
        except DefaultCredentialsError:
            return ProviderCheck("gcp", False, (
                "no Application Default Credentials: run 'gcloud auth application-default "
                "login' or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"))
        source = "Application Default Credentials"
    if not project:
        hint = f" (the credentials' project is {detected})" if detected else ""
        return ProviderCheck("gcp", False, f"{source}, but no project: set "
                                           f"providers.gcp.project or GOOGLE_CLOUD_PROJECT{hint}")
    return ProviderCheck("gcp", True, f"{source}, project {project}")


CHECKS: dict[str, Callable[[Config], ProviderCheck]] = {
    "local": check_local,
    "ssh": check_ssh,
    "aws": check_aws,
    "gcp": check_gcp,
}


def check_providers(config: Config | None = None,
                    names: Sequence[str] | None = None) -> list[ProviderCheck]:
    """Check ``names`` (default: all) against a ``providers:`` config (default: config.yaml)."""
    if config is None:
        from skystate.spec.home_config import home_providers_config

        config = home_providers_config()
    results = []
    for name in names or list(CHECKS):
        check = CHECKS.get(name)
        if check is None:
            results.append(ProviderCheck(name, False, f"unknown provider (known: "
                                                      f"{', '.join(CHECKS)})"))
            continue
        results.append(_implemented(check(dict(config.get(name) or {}))))
    return results


def _implemented(result: ProviderCheck) -> ProviderCheck:
    """Credentials alone do not make a provider usable in a build that lacks it."""
    from skystate.providers.registry import IMPLEMENTED

    if result.name in IMPLEMENTED:
        return result
    return ProviderCheck(result.name, False, f"not available in this version of skystate "
                                             f"({result.reason})")
