"""SSH plumbing for the SSH provider: pools, hosts, cached fabric connections, host keys.

fabric (and so paramiko) is imported only here and in ``ssh.py``, and only when an SSH
pool is actually used.

Host-key policy (explicit, per pool):

* default — trust on first use: keys live in ``$SKYSTATE_HOME/ssh/known_hosts``
  (OpenSSH format, ``[addr]:port`` for ports other than 22). An unknown host's key is
  recorded on first contact; a host whose key later *differs* is refused with a
  non-transient ``ProviderError`` (fix the file by hand if the host was reinstalled).
  The head of a multi-node cluster gets those same lines as its ``known_hosts`` and
  runs ``ssh -o StrictHostKeyChecking=yes`` to its workers.
* ``insecure_host_keys: true`` — no check and no recording at all (throw-away test
  rigs whose host keys change every run); the head uses ``StrictHostKeyChecking=no``.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from skystate.exceptions import CommandError, ProviderError
from skystate.home import home

T = TypeVar("T")
R = TypeVar("R")
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 120.0
_HOSTCTL = Path(__file__).resolve().parent.parent / "runtime" / "hostctl.py"


@dataclass(frozen=True)
class Host:
    """One host of a pool."""

    pool: str
    address: str
    port: int
    user: str | None

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port}"


@dataclass(frozen=True)
class Pool:
    """An ``ssh: pools: NAME`` section (fields: ``skystate.spec.documents.SSHPool``)."""

    name: str
    hosts: tuple[Host, ...]
    identity_file: str | None = None
    accelerators: Mapping[str, int] = field(default_factory=dict)
    cpus: float | None = None
    memory: float | None = None
    remote_dir: str = "~/.skystate-node"
    isolate_home: bool = False
    insecure_host_keys: bool = False

    @classmethod
    def from_config(cls, name: str, data: Mapping[str, Any]) -> Pool:
        default_port = int(data.get("port") or 22)
        user = data.get("user")
        hosts = []
        for entry in data.get("hosts") or []:
            text = str(entry)
            entry_user = user
            if "@" in text:
                entry_user, text = text.split("@", 1)
            address, port = text, default_port
            if text.count(":") == 1:  # "addr:port" (IPv6 addresses stay whole)
                address, port_text = text.split(":")
                port = int(port_text)
            hosts.append(Host(name, address, port, entry_user))
        if not hosts:
            raise ProviderError(f"ssh pool {name!r} has no hosts")
        identity = data.get("identity_file")
        return cls(
            name=name,
            hosts=tuple(hosts),
            identity_file=str(Path(identity).expanduser()) if identity else None,
            accelerators={str(k): int(v) for k, v in (data.get("accelerators") or {}).items()},
            cpus=float(data["cpus"]) if data.get("cpus") else None,
            memory=float(data["memory"]) if data.get("memory") else None,
            remote_dir=str(data.get("remote_dir") or "~/.skystate-node"),
            isolate_home=bool(data.get("isolate_home", False)),
            insecure_host_keys=bool(data.get("insecure_host_keys", False)),
        )


def known_hosts_path() -> Path:
    return home() / "ssh" / "known_hosts"


def _policy_class() -> Any:
    import paramiko

    class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
        """Record an unknown host's key in our known_hosts (under a file lock)."""

        def __init__(self, path: Path) -> None:
            self.path = path

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            with FileLock(str(self.path) + ".lock"):
                known = paramiko.HostKeys()
                if self.path.exists():
                    known.load(str(self.path))
                existing = known.lookup(hostname)
                if existing and key.get_name() in existing:
                    if existing[key.get_name()] != key:  # someone recorded another key
                        raise paramiko.BadHostKeyException(hostname, key, existing[key.get_name()])
                else:
                    with open(self.path, "a") as out:
                        out.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            client.get_host_keys().add(hostname, key.get_name(), key)

    return TrustOnFirstUse


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


class Connections:
    """One cached fabric ``Connection`` per host, shared by the provider and its agents."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, cache_key: tuple[str, ...]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(cache_key, threading.Lock())

    def _open(self, pool: Pool, host: Host) -> Any:
        from fabric import Connection

        connect_kwargs: dict[str, Any] = {}
        if pool.identity_file:
            connect_kwargs.update(
                key_filename=[pool.identity_file], look_for_keys=False, allow_agent=False
            )
        conn = Connection(
            host.address, user=host.user, port=host.port,
            connect_timeout=CONNECT_TIMEOUT, connect_kwargs=connect_kwargs,
        )  # fmt: skip
        if not pool.insecure_host_keys:
            import paramiko

            path = known_hosts_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            conn.client = paramiko.SSHClient()  # fabric's default is AutoAddPolicy
            conn.client.load_host_keys(str(path))
            conn.client.set_missing_host_key_policy(_policy_class()(path))
        conn.open()
        return conn

    def get(self, pool: Pool, host: Host) -> Any:
        cache_key = (pool.name, host.key)
        with self._lock(cache_key):
            conn = self._conns.get(cache_key)
            if conn is None or not conn.is_connected:
                if conn is not None:
                    conn.close()
                conn = self._translate(host, lambda: self._open(pool, host))
                self._conns[cache_key] = conn
            return conn

    def drop(self, pool: Pool, host: Host) -> None:
        conn = self._conns.pop((pool.name, host.key), None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection
                pass

    def close(self) -> None:
        for conn in list(self._conns.values()):
            try:
                conn.close()
            except Exception:
                pass
        self._conns.clear()

    @staticmethod
    def _translate(host: Host, call: Callable[[], T]) -> T:
        """Connection problems → ProviderError (transient unless keys/auth are wrong)."""
        import paramiko

        try:
            return call()
        except paramiko.BadHostKeyException as exc:
            raise ProviderError(
                f"ssh {host.label}: host key changed ({_describe(exc)}); if the host was "
                f"reinstalled, remove its line from {known_hosts_path()}"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise ProviderError(f"ssh {host.label}: authentication failed: {exc}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ProviderError(f"ssh {host.label}: {_describe(exc)}", transient=True) from exc

    def run(self, pool: Pool, host: Host, command: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """Run a shell command; fabric's Result (never raises on a non-zero exit).

        A cached connection that went stale is reopened once.
        """
        for attempt in (1, 2):
            conn = self.get(pool, host)
            try:
                return self._translate(
                    host,
                    lambda c=conn: c.run(
                        command, hide=True, warn=True, in_stream=False, timeout=timeout
                    ),
                )
            except ProviderError as exc:
                self.drop(pool, host)
                if attempt == 2 or not exc.transient:
                    raise
        raise AssertionError("unreachable")

    def put(self, pool: Pool, host: Host, data: bytes, remote_path: str) -> None:
        import io

        conn = self.get(pool, host)
        with self._lock((pool.name, host.key, "sftp")):  # one SFTP session per connection
            self._translate(host, lambda: conn.put(io.BytesIO(data), remote_path))

    def server_key_line(self, pool: Pool, host: Host) -> str:
        """``known_hosts`` line of the host's key as seen on our connection."""
        key = self.get(pool, host).transport.get_remote_server_key()
        return f"{host.known_hosts_name} {key.get_name()} {key.get_base64()}"

    def hostctl(
        self, pool: Pool, host: Host, op: str, args: Mapping[str, Any], python: str = "python3"
    ) -> dict[str, Any]:
        """Run one ``skystate.runtime.hostctl`` operation on the host (source sent inline)."""
        command = (
            f"{python} -c {shlex.quote(_hostctl_source())} {op} {shlex.quote(json.dumps(args))}"
        )
        result = self.run(pool, host, command)
        return parse_json_reply(host, f"hostctl {op}", result)


_SOURCE: list[str] = []


def _hostctl_source() -> str:
    if not _SOURCE:
        _SOURCE.append(_HOSTCTL.read_text())
    return _SOURCE[0]


def read_json_reply(label: str, what: str, result: Any) -> Any:
    """The last stdout line as JSON; no reply or garbage → CommandError (a ProviderError)."""
    lines = [line for line in (result.stdout or "").splitlines() if line.strip()]
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if data is None:
        raise CommandError(
            int(result.return_code), f"ssh {label}: {what}",
            (result.stderr or result.stdout or "").strip()[-2000:] or "no reply")
    return data


def parse_json_reply(host: Host, what: str, result: Any) -> Any:
    """Like ``read_json_reply``, and an ``{"error": ...}`` reply → ProviderError."""
    data = read_json_reply(host.label, what, result)
    if isinstance(data, dict) and "error" in data and len(data) <= 2:
        raise ProviderError(f"ssh {host.label}: {what}: {data['error']}")
    return data


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` over items in threads (one per host), results in order; first error raised."""
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]
