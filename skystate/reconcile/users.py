"""Who a request acts for, and whose cluster it may change.

The API server runs the requests of several users. Each request carries the user name
its client reported (``SKYSTATE_USER``, else the login name; see docs/security-authz.md
for what that name is trusted for); the server sets it here for the request's thread or
worker process. Outside a request (a CLI run in-process, a test) it is this process's
``SKYSTATE_USER`` or login name.

Clusters launched with the SDK belong to the user who launched them (their ``owner``);
clusters of a state directory belong to its project (the Project's owner label), not to
a user, and anyone who may apply that directory may act on them.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from contextvars import ContextVar
from typing import Any

from skystate.exceptions import ClusterOwnerIdentityMismatchError
from skystate.reconcile.desired_views import MANAGED_BY_SDK

REQUEST_USER: ContextVar[str | None] = ContextVar("skystate_request_user", default=None)


def current_user() -> str:
    """The requesting user: the API server runs requests of several users."""
    return REQUEST_USER.get() or os.environ.get("SKYSTATE_USER") or getpass.getuser()


def user_hash(user: str | None = None) -> str:
    return hashlib.md5((user or current_user()).encode()).hexdigest()[:8]


def owning_user(record: dict[str, Any]) -> str | None:
    """The user a cluster record belongs to; None for a state directory's cluster."""
    if record.get("managed_by") != MANAGED_BY_SDK:
        return None
    owner = record.get("owner")
    return str(owner) if owner else None


def check_cluster_owner(record: dict[str, Any]) -> None:
    """Changing another user's cluster: ``ClusterOwnerIdentityMismatchError`` (the seed's)."""
    owner = owning_user(record)
    user = current_user()
    if owner is not None and owner != user:
        raise ClusterOwnerIdentityMismatchError(
            f"cluster {record.get('name')!r} is owned by user {owner!r}, not by you "
            f"({user!r}); only its owner can change it or run jobs on it "
            f"(ask {owner!r}, or launch a cluster of your own under another name)")
