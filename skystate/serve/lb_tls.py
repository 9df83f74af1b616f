"""TLS at the load balancer: the ``service.tls`` key and certificate as a server context.

The load balancer terminates TLS (HTTPS to the client); replicas behind it stay plain
HTTP, as in SkyPilot. ``server_context`` is used twice: by ``serve up`` / ``serve update``
(``check_files``), so a bad key or certificate is an error naming the file before anything
starts, and by the load-balancer process itself when it starts.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

Record = dict[str, Any]


class TLSFileError(ValueError):
    """``service.tls`` names a key or certificate that cannot be used."""


def tls_files(task_config: Record) -> tuple[str, str] | None:
    """(keyfile, certfile) of a task config's ``service.tls``, or None without TLS."""
    service = task_config.get("service")
    tls = service.get("tls") if isinstance(service, dict) else None
    if not isinstance(tls, dict):
        return None
    return str(tls.get("keyfile") or ""), str(tls.get("certfile") or "")


def absolute(task_config: Record) -> Record:
    """The task config with ``service.tls`` paths made absolute (``~`` expanded): the
    API server and the load balancer do not run in the caller's folder."""
    files = tls_files(task_config)
    if files is None:
        return task_config
    key, cert = (os.path.abspath(os.path.expanduser(f)) if f else f for f in files)
    service = {**task_config["service"], "tls": {**task_config["service"]["tls"],
                                                 "keyfile": key, "certfile": cert}}
    return {**task_config, "service": service}


def _readable(kind: str, path: str) -> None:
    if not path:
        raise TLSFileError(f"service.tls.{kind} is empty")
    if not os.path.isabs(path):
        raise TLSFileError(f"service.tls.{kind} {path}: give an absolute path")
    file = Path(path)
    if not file.is_file():
        raise TLSFileError(f"service.tls.{kind} {path}: no such file")
    try:
        text = file.read_text(errors="replace")
    except OSError as exc:
        raise TLSFileError(f"service.tls.{kind} {path}: cannot read it ({exc.strerror})") \
            from None
    marker = "PRIVATE KEY-----" if kind == "keyfile" else "-----BEGIN CERTIFICATE-----"
    if marker not in text:
        what = "a PEM private key" if kind == "keyfile" else "a PEM certificate"
        raise TLSFileError(f"service.tls.{kind} {path}: not {what} (no '{marker}' line)")


def server_context(keyfile: str, certfile: str) -> ssl.SSLContext:
    """An HTTPS server context with this key and certificate chain (TLS 1.2 or newer);
    TLSFileError naming the file that is wrong."""
    _readable("keyfile", keyfile)
    _readable("certfile", certfile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    def no_passphrase() -> str:  # never an interactive prompt in a detached process
        raise TLSFileError(f"service.tls.keyfile {keyfile} is encrypted: give a key "
                           "without a passphrase")

    try:
        context.load_cert_chain(certfile=certfile, keyfile=keyfile, password=no_passphrase)
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(f"service.tls.keyfile {keyfile} is not the key of the "
                               f"certificate in service.tls.certfile {certfile}") from None
        raise TLSFileError(f"service.tls: cannot load certfile {certfile} with keyfile "
                           f"{keyfile}: {reason}") from None
    except OSError as exc:
        raise TLSFileError(f"service.tls: cannot load certfile {certfile} with keyfile "
                           f"{keyfile}: {exc}") from None
    return context


def check_files(task_config: Record) -> None:
    """TLSFileError if the task's ``service.tls`` key and certificate cannot serve."""
    files = tls_files(task_config)
    if files is not None:
        server_context(*files)
