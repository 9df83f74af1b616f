"""EC2 calls for the AWS provider: clients per region, error mapping, retries, lookups.

boto3 is imported only here, and only when an AWS cluster is actually used.

Error mapping (what the caller, and so the failover loop, sees):

* capacity, spot price, unsupported type in a zone, quotas
  (``CAPACITY_CODES``) → ``ResourcesUnavailableError``: the failover loop tries the
  next offer (zone, region, cloud);
* throttling (``THROTTLE_CODES``) and 5xx → retried here with exponential backoff,
  then ``ProviderError(transient=True)``; botocore's own retries are off so there is
  one policy, this one;
* connection problems and waiter time-outs → ``ProviderError(transient=True)``;
* anything else (bad AMI, missing permissions, ...) → ``ProviderError`` (not retried).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from skystate.exceptions import ProviderError, ResourcesUnavailableError

CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "InsufficientCapacity", "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded", "Unsupported", "VcpuLimitExceeded",
    "InstanceLimitExceeded", "InsufficientFreeAddressesInSubnet",
})  # fmt: skip
THROTTLE_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "EC2ThrottledException",
    "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
})  # fmt: skip
RETRIES = 6  # attempts of one call on throttling
BACKOFF_SECONDS = 0.5  # first delay; doubles each attempt, at most MAX_BACKOFF_SECONDS
MAX_BACKOFF_SECONDS = 20.0
WAIT_DELAY_SECONDS = 5  # waiter poll interval (EC2 state changes take 10 s to minutes)
WAIT_MAX_ATTEMPTS = 120
CANONICAL = "099720109477"  # Ubuntu's AMI owner
UBUNTU_NAMES = (
    "ubuntu/images/hvm-ssd*/ubuntu-*-22.04-amd64-server-*",
    "ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*",
)
GPU_IMAGE = ("amazon", "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


class EC2:
    """One ``ec2`` client per region (created once, thread-safe), and ``call`` to use it."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._session: Any = None

    def client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = boto3.session.Session()
                config = Config(
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=10, read_timeout=60,
                )  # fmt: skip
                client = self._session.client(
                    "ec2", region_name=region, endpoint_url=self.endpoint_url, config=config
                )
                self._clients[region] = client
            return client

    def call(self, region: str, operation: str, **kwargs: Any) -> Any:
        """``client.<operation>(**kwargs)`` with the module's error mapping and backoff."""
        method = getattr(self.client(region), operation)
        return retrying(region, operation, lambda: method(**kwargs))

    def pages(self, region: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
        """Every item under ``key`` of a paginated ``describe_*`` call."""
        items: list[Any] = []
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            page = self.call(region, operation, **kwargs, **extra)
            items.extend(page.get(key) or [])
            token = page.get("NextToken")
            if not token:
                return items

    def wait(self, region: str, waiter: str, instance_ids: Sequence[str]) -> None:
        """Block until every instance reached the waiter's state (time-out: transient)."""
        if not instance_ids:
            return
        from botocore.exceptions import WaiterError

        def run() -> None:
            try:
                self.client(region).get_waiter(waiter).wait(
                    InstanceIds=list(instance_ids),
                    WaiterConfig={"Delay": WAIT_DELAY_SECONDS, "MaxAttempts": WAIT_MAX_ATTEMPTS},
                )
            except WaiterError as exc:
                raise ProviderError(
                    f"aws/{region}: {', '.join(instance_ids)} did not reach {waiter}: {exc}",
                    transient=True,
                ) from exc

        retrying(region, waiter, run)


def retrying(region: str, operation: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; throttling is retried with backoff, every error is mapped."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    delay = BACKOFF_SECONDS
    for attempt in range(1, RETRIES + 1):
        try:
            return call()
        except ClientError as exc:
            code = error_code(exc)
            message = (exc.response.get("Error") or {}).get("Message") or str(exc)
            where = f"aws/{region}: {operation}: {code}: {message}"
            if code in CAPACITY_CODES:
                raise ResourcesUnavailableError(where) from exc
            if code not in THROTTLE_CODES:
                raise ProviderError(where) from exc
            if attempt == RETRIES:
                raise ProviderError(f"{where} (after {RETRIES} attempts)", transient=True) from exc
        except NoCredentialsError as exc:
            raise ProviderError(
                "aws: no credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or run `aws configure`)"
            ) from exc
        except (ConnectionError, ReadTimeoutError) as exc:
            raise ProviderError(f"aws/{region}: {operation}: {exc}", transient=True) from exc
        except BotoCoreError as exc:
            raise ProviderError(f"aws/{region}: {operation}: {exc}") from exc
        time.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    raise AssertionError("unreachable")


# --- lookups the provider makes once per region ------------------------------------------


def default_vpc(ec2: EC2, region: str) -> str:
    vpcs = ec2.call(region, "describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}])
    if not vpcs.get("Vpcs"):
        raise ProviderError(
            f"aws/{region} has no default VPC; set providers.aws.security_group to a group "
            "of the VPC to launch in"
        )
    return str(vpcs["Vpcs"][0]["VpcId"])


def find_image(ec2: EC2, region: str, gpu: bool) -> Mapping[str, Any]:
    """The newest Ubuntu AMI (the NVIDIA deep learning base AMI for GPU instances)."""
    searches = [(CANONICAL, name) for name in UBUNTU_NAMES]
    if gpu:
        searches.insert(0, GPU_IMAGE)
    for owner, name in searches:
        images = ec2.call(
            region, "describe_images", Owners=[owner],
            Filters=[{"Name": "name", "Values": [name]},
                     {"Name": "state", "Values": ["available"]}],
        )["Images"]  # fmt: skip
        if images:
            return max(images, key=lambda i: (i.get("CreationDate") or "", i["ImageId"]))
    raise ProviderError(
        f"aws/{region}: no Ubuntu AMI found; set providers.aws.image_id (an AMI id, or "
        "{region: AMI id})"
    )


def describe_image(ec2: EC2, region: str, image_id: str) -> Mapping[str, Any]:
    images = ec2.call(region, "describe_images", ImageIds=[image_id])["Images"]
    if not images:
        raise ProviderError(f"aws/{region}: image {image_id} does not exist")
    return dict(images[0])


def import_key_pair(ec2: EC2, region: str, name: str, public_key: str) -> None:
    """Make the key pair exist in the region (idempotent)."""
    found = ec2.call(region, "describe_key_pairs",
                     Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]  # fmt: skip
    if found:
        return
    try:
        ec2.call(region, "import_key_pair", KeyName=name, PublicKeyMaterial=public_key.encode())
    except ProviderError as exc:
        if "Duplicate" not in str(exc):
            raise


def ensure_security_group(
    ec2: EC2, region: str, name: str, tags: Mapping[str, str], ports: Sequence[str]
) -> str:
    """A group opening 22 and ``ports`` (TCP, from anywhere); created once, then extended."""
    vpc = default_vpc(ec2, region)
    groups = ec2.call(region, "describe_security_groups", Filters=[
        {"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}],
    )["SecurityGroups"]  # fmt: skip
    if groups:
        group_id = str(groups[0]["GroupId"])
        have = groups[0].get("IpPermissions") or []
    else:
        group_id = str(ec2.call(
            region, "create_security_group", GroupName=name, VpcId=vpc,
            Description="skystate cluster: SSH and the cluster's ports",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(tags)}],
        )["GroupId"])  # fmt: skip
        have = []
    opened = {(p.get("FromPort"), p.get("ToPort")) for p in have}
    wanted = [port_range(p) for p in ["22", *ports]]
    missing = sorted({r for r in wanted if r not in opened})
    if missing:
        permissions = [
            {"IpProtocol": "tcp", "FromPort": lo, "ToPort": hi,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for lo, hi in missing
        ]  # fmt: skip
        try:
            ec2.call(region, "authorize_security_group_ingress", GroupId=group_id,
                     IpPermissions=permissions)  # fmt: skip
        except ProviderError as exc:
            if "Duplicate" not in str(exc):
                raise
    return group_id


def port_range(port: str | int) -> tuple[int, int]:
    """``"8080"`` → (8080, 8080); ``"8000-8010"`` → (8000, 8010)."""
    text = str(port).strip()
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}
