"""Buckets of the storage mounts: S3 through boto3 (GCS and others are refused by name).

``S3Buckets`` uses the AWS provider's settings (``providers: aws: endpoint_url``, the
first of ``regions``), so tests run it against moto. Buckets skystate creates carry the
tag ``skystate-storage-owner`` (the owner that made them); ``delete`` refuses a bucket
without it, so a bucket skystate did not make is never deleted.

boto3 is imported only here, when a storage mount is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from skystate.exceptions import NotSupportedError, ProviderError

__all__ = ["OWNER_TAG", "S3Buckets", "buckets_for"]

OWNER_TAG = "skystate-storage-owner"
TRANSFERS = 8  # objects moved at once


class S3Buckets:
    """One S3 endpoint: create, tag, upload a folder, download a prefix, delete."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = config or {}
        self.endpoint_url = config.get("endpoint_url")
        self.region = (list(config.get("regions") or []) or ["us-east-1"])[0]
        self._client: Any = None

    def settings(self) -> dict[str, Any]:
        """The settings that reach this endpoint again (``S3Buckets(settings)``)."""
        return {"endpoint_url": self.endpoint_url, "regions": [self.region]}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", region_name=self.region, endpoint_url=self.endpoint_url,
                config=Config(retries={"mode": "standard"}, connect_timeout=10,
                              read_timeout=120))
        return self._client

    def _call(self, what: str, bucket: str, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = str((exc.response.get("Error") or {}).get("Code") or "")
            raise ProviderError(f"s3://{bucket}: {what}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise ProviderError(f"s3://{bucket}: {what}: {exc}", transient=True) from exc

    def exists(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
            return True
        except ClientError as exc:
            code = str((exc.response.get("Error") or {}).get("Code") or "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise ProviderError(f"s3://{bucket}: cannot be read ({code}): {exc}") from exc

    def create(self, bucket: str, owner: str) -> None:
        """Create the bucket, tagged as ours (an error if its name is taken)."""
        args: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._call("create", bucket, "create_bucket", **args)
        self._call("tag", bucket, "put_bucket_tagging", Bucket=bucket,
                   Tagging={"TagSet": [{"Key": OWNER_TAG, "Value": owner}]})

    def owner(self, bucket: str) -> str | None:
        """The skystate owner tag of the bucket, None when skystate did not make it."""
        from botocore.exceptions import ClientError

        try:
            tags = self.client.get_bucket_tagging(Bucket=bucket).get("TagSet") or []
        except ClientError:
            return None
        return next((t["Value"] for t in tags if t.get("Key") == OWNER_TAG), None)

    def upload(self, source: Path, bucket: str, prefix: str) -> int:
        """Put a file or a folder's files (``.git`` skipped) under ``prefix``; how many."""
        base = f"{prefix}/" if prefix else ""
        files: list[tuple[Path, str]] = [(source, source.name)] if source.is_file() else []
        if source.is_dir():
            for folder, dirs, names in os.walk(source):
                dirs[:] = [d for d in dirs if d != ".git"]
                for name in names:
                    path = Path(folder) / name
                    files.append((path, path.relative_to(source).as_posix()))
        _parallel([lambda p=path, k=key: self._call(
            f"upload {k}", bucket, "upload_file", Filename=str(p), Bucket=bucket, Key=base + k)
            for path, key in files])
        return len(files)

    def download(self, bucket: str, prefix: str, target: Path) -> int:
        """Every object under ``prefix`` into ``target`` (a folder); how many.

        An object whose key is exactly ``prefix`` (a file URI) becomes the file ``target``.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        listing = prefix + "/" if prefix else ""
        try:
            pages = list(paginator.paginate(Bucket=bucket, Prefix=prefix))
        except Exception as exc:  # noqa: BLE001 - botocore's errors, named below
            raise ProviderError(f"s3://{bucket}/{prefix}: cannot list: {exc}") from exc
        keys = [o["Key"] for page in pages for o in page.get("Contents") or []]
        if prefix and keys == [prefix]:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._call(f"download {prefix}", bucket, "download_file", Bucket=bucket,
                       Key=prefix, Filename=str(target))
            return 1
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        todo: list[tuple[str, Path]] = []
        for key in keys:
            if listing and not key.startswith(listing) or key.endswith("/"):
                continue
            path = (target / key[len(listing):]).resolve()
            if root not in path.parents:
                raise ProviderError(f"s3://{bucket}/{key}: the key leaves its folder; "
                                    "nothing was copied")
            path.parent.mkdir(parents=True, exist_ok=True)
            todo.append((key, path))
        _parallel([lambda k=key, p=path: self._call(
            f"download {k}", bucket, "download_file", Bucket=bucket, Key=k, Filename=str(p))
            for key, path in todo])
        return len(todo)

    def delete(self, bucket: str, owner: str) -> None:
        """Empty and delete a bucket skystate made for ``owner`` (refuses any other)."""
        if not self.exists(bucket):
            return
        if self.owner(bucket) != owner:
            raise ProviderError(f"s3://{bucket} is not tagged {OWNER_TAG}={owner}; "
                                "skystate deletes only the buckets it made")
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            objects = [{"Key": o["Key"]} for o in page.get("Contents") or []]
            if objects:
                self._call("empty", bucket, "delete_objects", Bucket=bucket,
                           Delete={"Objects": objects, "Quiet": True})
        self._call("delete", bucket, "delete_bucket", Bucket=bucket)


def _parallel(calls: list[Callable[[], Any]]) -> None:
    """Run the transfers 8 at a time (boto3 clients are thread-safe); the first error."""
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=min(TRANSFERS, len(calls))) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def buckets_for(store: str, providers_config: Mapping[str, Any]) -> S3Buckets:
    """The bucket client of a store (``S3``); NotSupportedError for any other."""
    if store == "S3":
        return S3Buckets(providers_config.get("aws") or {})
    raise NotSupportedError(
        f"storage store {store} is not supported by this version of skystate (S3 is; "
        "GCS needs google-cloud-storage, which skystate does not ship)")
