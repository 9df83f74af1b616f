"""The actual-state store: TinyDB tables under ``SKYSTATE_HOME/state.json``.

Tables: ``clusters`` (one record per cluster), ``nodes`` (one per node), ``jobs``
(declarative jobs, keyed by cluster and name), ``managed_jobs`` (skystate.jobs, keyed
by job_id), ``services`` (skystate.serve, keyed by name), ``requests`` and ``events``
(an audit log of every action and its outcome), and ``meta`` (the state version).

Writes happen inside ``transaction()``: the changes of one logical step are made in
memory and flushed once, atomically, with the state version bumped. A saved plan
remembers the version it was made at; a different version means the state moved.

The API server runs requests in worker processes, each with its own ``Store``. A
transaction therefore holds a short writer lock (``flock``, released by the kernel if
the holder dies) and first re-reads the file if another writer replaced it, so
concurrent requests on different clusters never lose each other's records.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinydb import TinyDB

from skystate.home import state_db_path
from skystate.reconcile.storage import AtomicJSONStorage, read_json_file

EVENTS_KEPT = 5000

Record = dict[str, Any]


class Store:
    """One open view of the database; the writer holds the state lock while it writes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else state_db_path()
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)
        self._storage: AtomicJSONStorage = self._db.storage  # type: ignore[assignment]
        self._depth = 0
        self._cache: dict[str, dict[Any, tuple[int, Record]]] = {}
        self._next_ids: dict[str, int] = {}
        self._thread_lock = threading.RLock()
        self._writer_path = self.path.with_name(self.path.name + ".writer")
        self._writer_fd: int | None = None

    # --- transactions -------------------------------------------------------------

    @property
    def version(self) -> int:
        self._sync()
        meta = self._db.table("meta").get(doc_id=1)
        return int(meta["version"]) if meta else 0

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes: one atomic flush and one version bump at the outermost exit."""
        with self._thread_lock:
            outermost = self._depth == 0
            if outermost:
                self._lock_writers()
            self._depth += 1
            try:
                yield self
                if outermost and self._storage.dirty:
                    self._bump_version()
                    self._storage.flush()
            except BaseException:
                if outermost:
                    self._storage.discard()
                    self._forget_caches()
                raise
            finally:
                self._depth -= 1
                if outermost:
                    self._unlock_writers()

    def _lock_writers(self) -> None:
        self._writer_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._writer_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._writer_fd = fd
        if self._storage.reload_if_changed():
            self._forget_caches()

    def _unlock_writers(self) -> None:
        if self._writer_fd is not None:
            os.close(self._writer_fd)  # closing releases the flock
            self._writer_fd = None

    def _forget_caches(self) -> None:
        self._db.clear_cache()
        self._cache.clear()
        self._next_ids.clear()

    def _sync(self) -> None:
        """Outside a transaction, see what other writers flushed since we last read."""
        with self._thread_lock:
            if self._depth == 0 and self._storage.reload_if_changed():
                self._forget_caches()

    def _bump_version(self) -> None:
        meta = self._db.table("meta")
        version = self.version + 1
        if meta.get(doc_id=1):
            meta.update({"version": version, "updated_at": time.time()}, doc_ids=[1])
        else:
            meta.insert({"version": version, "updated_at": time.time()})

    def _require_transaction(self) -> None:
        if self._depth == 0:
            raise RuntimeError("store writes must happen inside Store.transaction()")

    # --- keyed tables --------------------------------------------------------------
    # Records live in TinyDB's own layout ({table: {doc_id: record}}) inside the
    # memory-backed storage, changed in place with an index by key: O(1) per write.
    # (TinyDB's Table API rebuilds the whole table on every write: O(n) each.)

    def _raw(self, table: str) -> dict[str, Record]:
        data = self._storage.read()
        if data is None:
            data = {}
            self._storage.write(data)
        return data.setdefault(table, {})

    def _index(self, table: str, key_fields: tuple[str, ...]) -> dict[Any, tuple[int, Record]]:
        if self._depth == 0:
            self._sync()
        index = self._cache.get(table)
        if index is None:
            index = {
                tuple(doc.get(k) for k in key_fields): (int(doc_id), doc)
                for doc_id, doc in self._raw(table).items()
            }
            self._cache[table] = index
        return index

    def _get(self, table: str, key_fields: tuple[str, ...], key: tuple[Any, ...]) -> Record | None:
        entry = self._index(table, key_fields).get(key)
        return dict(entry[1]) if entry else None

    def _put(self, table: str, key_fields: tuple[str, ...], record: Record) -> None:
        self._require_transaction()
        key = tuple(record.get(k) for k in key_fields)
        index = self._index(table, key_fields)
        entry = index.get(key)
        raw = self._raw(table)
        if entry:
            doc_id = entry[0]
        else:
            if table not in self._next_ids:
                self._next_ids[table] = max((int(i) for i in raw), default=0) + 1
            doc_id = self._next_ids[table]
            self._next_ids[table] += 1
        stored = dict(record)
        raw[str(doc_id)] = stored
        index[key] = (doc_id, stored)
        self._storage.mark_dirty()

    def _delete(self, table: str, key_fields: tuple[str, ...], key: tuple[Any, ...]) -> None:
        self._require_transaction()
        entry = self._index(table, key_fields).pop(key, None)
        if entry:
            self._raw(table).pop(str(entry[0]), None)
            self._storage.mark_dirty()

    def _all(self, table: str, key_fields: tuple[str, ...]) -> list[Record]:
        return [dict(rec) for _, rec in self._index(table, key_fields).values()]

    # --- clusters and nodes --------------------------------------------------------

    def cluster(self, name: str) -> Record | None:
        return self._get("clusters", ("name",), (name,))

    def clusters(self) -> list[Record]:
        return self._all("clusters", ("name",))

    def put_cluster(self, record: Record) -> None:
        self._put("clusters", ("name",), record)

    def delete_cluster(self, name: str) -> None:
        """Forget a cluster with its nodes and the job records on it."""
        for job in self.jobs(name):
            self._delete("jobs", ("cluster", "name"), (name, job["name"]))
        for node in self.nodes(name):
            self._delete("nodes", ("cluster", "rank"), (name, node["rank"]))
        self._delete("clusters", ("name",), (name,))

    def nodes(self, cluster: str) -> list[Record]:
        return sorted(
            (n for n in self._all("nodes", ("cluster", "rank")) if n["cluster"] == cluster),
            key=lambda n: n["rank"],
        )

    def nodes_by_cluster(self) -> dict[str, list[Record]]:
        return group_nodes(self._all("nodes", ("cluster", "rank")))

    def set_nodes(self, cluster: str, nodes: list[Record]) -> None:
        for node in self.nodes(cluster):
            self._delete("nodes", ("cluster", "rank"), (cluster, node["rank"]))
        for node in nodes:
            self._put("nodes", ("cluster", "rank"), {**node, "cluster": cluster})

    # --- jobs (declarative: one record per (cluster, name)) --------------------------

    def job(self, cluster: str, name: str) -> Record | None:
        return self._get("jobs", ("cluster", "name"), (cluster, name))

    def jobs(self, cluster: str | None = None) -> list[Record]:
        records = self._all("jobs", ("cluster", "name"))
        return [j for j in records if cluster is None or j["cluster"] == cluster]

    def put_job(self, record: Record) -> None:
        self._put("jobs", ("cluster", "name"), record)

    def delete_job(self, cluster: str, name: str) -> None:
        self._delete("jobs", ("cluster", "name"), (cluster, name))

    # --- services (skystate.serve: one record per service name) ------------------------

    def service(self, name: str) -> Record | None:
        return self._get("services", ("name",), (name,))

    def services(self) -> list[Record]:
        return sorted(self._all("services", ("name",)), key=lambda s: s["service_id"])

    def put_service(self, record: Record) -> None:
        self._put("services", ("name",), record)

    def delete_service(self, name: str) -> None:
        self._delete("services", ("name",), (name,))

    # --- managed jobs (skystate.jobs: one record per job_id) ---------------------------

    def managed_job(self, job_id: int) -> Record | None:
        return self._get("managed_jobs", ("job_id",), (int(job_id),))

    def managed_jobs(self) -> list[Record]:
        return sorted(self._all("managed_jobs", ("job_id",)), key=lambda j: j["job_id"])

    def put_managed_job(self, record: Record) -> None:
        self._put("managed_jobs", ("job_id",), record)

    # --- storage (buckets of storage mounts: one record per "STORE:bucket") ------------

    def storage(self, key: str) -> Record | None:
        return self._get("storage", ("key",), (key,))

    def storages(self) -> list[Record]:
        return self._all("storage", ("key",))

    def put_storage(self, record: Record) -> None:
        self._put("storage", ("key",), record)

    def delete_storage(self, key: str) -> None:
        self._delete("storage", ("key",), (key,))

    # --- events (audit log) ----------------------------------------------------------

    def add_event(self, address: str, action: str, outcome: str, message: str = "") -> None:
        self._require_transaction()
        # Raw, like the keyed tables: TinyDB's Table keeps its next id across a reload
        # of another writer's flush, and would then reuse (and refuse) an existing id.
        raw = self._raw("events")
        if "events" not in self._next_ids:
            self._next_ids["events"] = max((int(i) for i in raw), default=0) + 1
        doc_id = self._next_ids["events"]
        self._next_ids["events"] += 1
        raw[str(doc_id)] = {"time": time.time(), "address": address, "action": action,
                            "outcome": outcome, "message": message}
        if len(raw) > EVENTS_KEPT * 1.2:
            for old in sorted(int(i) for i in raw)[: len(raw) - EVENTS_KEPT]:
                raw.pop(str(old), None)
        self._storage.mark_dirty()

    def events(self, address: str | None = None) -> list[Record]:
        self._sync()
        docs = self._db.table("events").all()
        return [dict(d) for d in docs if address is None or d["address"] == address]


def group_nodes(nodes: Iterable[Record]) -> dict[str, list[Record]]:
    """Node records by cluster name, each list in rank order."""
    grouped: dict[str, list[Record]] = {}
    for node in nodes:
        grouped.setdefault(node["cluster"], []).append(node)
    for items in grouped.values():
        items.sort(key=lambda n: n["rank"])
    return grouped


def read_snapshot(path: Path | None = None) -> dict[str, Any]:
    """The raw tables, read without TinyDB (fast path for read-only commands)."""
    data = read_json_file(Path(path) if path else state_db_path()) or {}
    return {
        name: list(table.values()) if isinstance(table, dict) else []
        for name, table in data.items()
    }
