"""Storage mounts: buckets made ready and their contents put on the nodes, for every provider.

A task's ``file_mounts`` may hold storage mounts (mappings: ``spec.storage``) and bucket
URIs (``/data: s3://bucket/path``). Before a job is submitted, ``stage`` turns each into
a plain file mount of a local folder, which the provider's existing sync copies to every
node before setup (local: into the node folder; SSH and clouds: in the sync tar):

1. the bucket is created when missing (tagged ``skystate-storage-owner``) and recorded
   in the store's ``storage`` table *before* the create, so a crash never leaves a
   bucket nobody knows we made;
2. a local ``source`` is uploaded to it (every submit, as SkyPilot syncs every launch);
3. the bucket's contents (or the URI's prefix) are downloaded into a staging folder
   under ``$SKYSTATE_HOME/storage/staging/<cluster>/``, replacing the last copy.

So the contents travel through the API server's machine rather than bucket-to-node: the
cost of reaching every provider (and of nodes that hold no cloud credentials).

``check`` refuses, before anything is provisioned, what no node can do: ``MOUNT`` and
``MOUNT_CACHED`` (no node has a FUSE mounter) and stores other than S3. ``release``
(on ``down``) deletes the buckets skystate created with ``persistent: false`` once no
recorded cluster uses them; a bucket skystate did not create is never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skystate.exceptions import NotSupportedError, ProviderError
from skystate.home import home
from skystate.spec.mounts import is_local_source
from skystate.spec.storage import (
    BUCKET_SCHEMES,
    StorageMode,
    StorageSpec,
    StoreType,
    split_bucket_uri,
)

__all__ = ["StorageMount", "check", "describe", "mounts_of", "release", "stage"]

Record = dict[str, Any]


class _Lock(Protocol):
    def __enter__(self) -> Any: ...

    def __exit__(self, *args: Any) -> Any: ...


@dataclass(frozen=True)
class StorageMount:
    """One storage mount (``spec``) or bucket URI file mount (``spec`` None)."""

    dst: str
    store: StoreType | None
    bucket: str
    prefix: str
    spec: StorageSpec | None = None

    @property
    def mode(self) -> StorageMode:
        return self.spec.effective_mode if self.spec else StorageMode.COPY

    @property
    def uri(self) -> str:
        scheme = next((k for k, v in BUCKET_SCHEMES.items() if v is self.store), "?")
        return f"{scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def local_sources(self) -> list[str]:
        source = self.spec.source if self.spec else None
        if isinstance(source, str):
            return [source] if is_local_source(source) else []
        return list(source or [])


def mounts_of(file_mounts: Mapping[str, Any] | None) -> list[StorageMount]:
    """The storage mounts and bucket URIs among a task's ``file_mounts``."""
    found: list[StorageMount] = []
    for dst, src in (file_mounts or {}).items():
        if isinstance(src, (dict, StorageSpec)):
            spec = src if isinstance(src, StorageSpec) else StorageSpec.model_validate(src)
            store, bucket, prefix = spec.bucket()
            found.append(StorageMount(dst, store, bucket, prefix, spec))
        elif isinstance(src, str) and not is_local_source(src):
            scheme, bucket, prefix = split_bucket_uri(src)
            found.append(StorageMount(dst, BUCKET_SCHEMES.get(scheme), bucket, prefix))
    return found


def check(file_mounts: Mapping[str, Any] | None, where: str = "") -> None:
    """NotSupportedError for a mount no node can have (see the module doc)."""
    for mount in mounts_of(file_mounts):
        name = f"{where}file_mounts.{mount.dst}"
        if mount.mode is not StorageMode.COPY:
            raise NotSupportedError(
                f"{name}: mode {mount.mode.value} needs a FUSE mounter on the nodes, which "
                "skystate's nodes do not have; use mode: COPY (the bucket's contents are "
                "copied to every node before setup)")
        if mount.store is not StoreType.S3:
            what = mount.store.value if mount.store else mount.uri
            raise NotSupportedError(
                f"{name}: {what} buckets are not supported by this version of skystate "
                "(S3 is)")


def describe(file_mounts: Mapping[str, Any] | None) -> list[str]:
    """One line per storage mount, for plan output."""
    lines = []
    for mount in mounts_of(file_mounts):
        if mount.spec is None:
            lines.append(f"{mount.dst} <- {mount.uri} (COPY, read only)")
            continue
        sources = ", ".join(mount.local_sources)
        mode = mount.mode.value + ("" if mount.spec.mode else " (mode unset)")
        keep = "persistent" if mount.spec.persistent else "deleted on down if skystate made it"
        lines.append(f"{mount.dst} <- {mount.uri} ({mode}, {keep}"
                     + (f", uploaded from {sources})" if sources else ")"))
    return lines


# --- staging (at submit) -------------------------------------------------------------


def stage(file_mounts: Mapping[str, Any] | None, *, cluster: str, owner: str, store: Any,
          lock: _Lock, providers_config: Mapping[str, Any]) -> dict[str, str]:
    """The task's file mounts with every storage mount as a local staged folder."""
    from skystate.providers.object_store import buckets_for

    check(file_mounts)
    out = {k: v for k, v in (file_mounts or {}).items() if isinstance(v, str)}
    for mount in mounts_of(file_mounts):
        client = buckets_for(mount.store.value if mount.store else "?", providers_config)
        if mount.spec is not None:
            _ensure_bucket(client, mount, cluster=cluster, owner=owner, store=store, lock=lock)
            for source in mount.local_sources:
                path = Path(source).expanduser()
                if not path.exists():
                    raise FileNotFoundError(f"storage source {source} does not exist")
                prefix = mount.prefix
                if isinstance(mount.spec.source, list) or path.is_file():
                    prefix = "/".join(p for p in (prefix, path.name if path.is_dir() else "")
                                      if p)
                client.upload(path, mount.bucket, prefix)
        elif not client.exists(mount.bucket):
            raise ProviderError(f"file_mounts.{mount.dst}: bucket {mount.uri} does not exist")
        out[mount.dst] = str(_download(client, mount, cluster))
    return out


def _ensure_bucket(client: Any, mount: StorageMount, *, cluster: str, owner: str,
                   store: Any, lock: _Lock) -> None:
    key = f"{mount.store.value if mount.store else '?'}:{mount.bucket}"
    with lock:
        record = store.storage(key)
    persistent = bool(mount.spec.persistent) if mount.spec else True
    if record is None:
        record = {"key": key, "name": mount.bucket, "store": key.split(":")[0],
                  "owner": owner, "created": False, "persistent": persistent,
                  "clusters": [], "created_at": None,
                  # where the bucket lives: ``release`` deletes it there, whatever config
                  # the ``down`` runs with
                  "endpoint": client.settings()}
    if not client.exists(mount.bucket):
        # intent first: a crash after the create still knows the bucket is ours
        record = {**record, "created": True, "owner": owner, "persistent": persistent,
                  "created_at": time.time()}
        _put(store, lock, {**record, "clusters": sorted({*record["clusters"], cluster})})
        client.create(mount.bucket, owner)
    elif record["created"]:
        record = {**record, "persistent": persistent}  # the latest task's word
    _put(store, lock, {**record, "clusters": sorted({*record["clusters"], cluster})})


def _put(store: Any, lock: _Lock, record: Record) -> None:
    with lock, store.transaction():
        store.put_storage(record)


def _download(client: Any, mount: StorageMount, cluster: str) -> Path:
    base = home() / "storage" / "staging" / cluster
    base.mkdir(parents=True, exist_ok=True)
    final = base / hashlib.sha256(mount.dst.encode()).hexdigest()[:16]
    fresh = Path(tempfile.mkdtemp(dir=base, prefix=".new-"))
    try:
        client.download(mount.bucket, mount.prefix, fresh / "c")
        if not (fresh / "c").exists():
            (fresh / "c").mkdir()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(final)
        (fresh / "c").rename(final)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return final


# --- release (at down) ---------------------------------------------------------------


def release(cluster: str, *, store: Any, lock: _Lock,
            providers_config: Mapping[str, Any]) -> list[str]:
    """Forget ``cluster``'s use of its buckets; delete the ephemeral ones skystate made
    that no recorded cluster uses any more. The names of the buckets deleted."""
    from skystate.providers.object_store import buckets_for

    shutil.rmtree(home() / "storage" / "staging" / cluster, ignore_errors=True)
    with lock:
        records = [r for r in store.storages() if cluster in r.get("clusters", [])]
        live = {c["name"] for c in store.clusters()} - {cluster}
    deleted, failures = [], []
    for record in records:
        users = [c for c in record["clusters"] if c != cluster and c in live]
        if users or record.get("persistent", True) or not record.get("created"):
            _put(store, lock, {**record, "clusters": users})
            continue
        try:
            where = {"aws": record["endpoint"]} if record.get("endpoint") else providers_config
            buckets_for(record["store"], where).delete(record["name"], record["owner"])
        except (ProviderError, NotSupportedError) as exc:
            _put(store, lock, {**record, "clusters": users})
            failures.append(f"{record['name']}: {exc}")
            continue
        with lock, store.transaction():
            store.delete_storage(record["key"])
        deleted.append(record["name"])
    if failures:
        raise ProviderError(f"cluster {cluster} is down, but its bucket(s) could not be "
                            f"deleted: {'; '.join(failures)}")
    return deleted
