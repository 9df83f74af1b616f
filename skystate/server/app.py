"""The HTTP front of the API server (FastAPI). Business logic lives in reconcile/.

Every route needs the bearer token when the server has one (always when it listens
beyond loopback). The token is compared in constant time and never logged, stored
in a request or echoed in an error. Before any of that, a body over the size limit is
refused (``body_limit``). Who a request's user is, what ``api_cancel`` may cancel and
the request-ID prefix rules: docs/security-authz.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from skystate import __version__
from skystate.server import settings
from skystate.server.auth import UNAUTHORIZED, TokenGate, token_matches
from skystate.server.body_limit import BodyLimit, max_body_bytes
from skystate.server.records import ANONYMOUS, MIN_PREFIX_LENGTH, RequestDB, RequestStatus
from skystate.server.scheduler import InvalidRequest, Scheduler

API_VERSION = "1"
# A user name as the client reports it: printable, no control characters (it is shown
# in tables and logs).
USER_NAME = r"^[^\x00-\x1f\x7f]*$"


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    user_name: str = Field(default="", max_length=256, pattern=USER_NAME)
    settings: dict[str, str | None] = Field(default_factory=dict)  # server.settings


class SubmitReply(BaseModel):
    request_id: str


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_ids: list[str] | None = None
    all_users: bool = False
    user_name: str = Field(default="", max_length=256, pattern=USER_NAME)


class RequestRow(BaseModel):
    request_id: str
    name: str
    args: Any = None
    user_name: str | None = None
    status: RequestStatus
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    pid: int | None = None
    log_path: str | None = None
    cluster_name: str | None = None
    schedule_type: str | None = None
    return_value: Any = None
    error: Any = None
    status_msg: str | None = None


class Health(BaseModel):
    status: str
    version: str
    api_version: str
    pid: int
    started_at: float
    home: str
    settings: dict[str, str | None]  # the server's own CLUSTER_SETTINGS (None: unset)


def create_app(home: Path, *, token: str | None, max_workers: int = 8,
               warm: int = 2, max_body: int | None = None) -> FastAPI:
    db = RequestDB(home / "requests.db")
    scheduler = Scheduler(db, home, max_workers=max_workers, warm=warm)
    waiters: dict[str, list[asyncio.Event]] = {}
    docs = {} if not token else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title="skystate API server", version=__version__,
                  lifespan=_lifespan(scheduler, waiters),
                  dependencies=[Depends(_token_check(token))], **docs)  # type: ignore[arg-type]
    app.state.scheduler = scheduler
    app.state.started = False
    app.include_router(_health_route(home))
    app.include_router(_request_routes(db, scheduler, waiters))
    # The last added is the outermost: the body's size, then the token, are checked on
    # the headers before any of the body is read (FastAPI reads it before dependencies).
    if token:
        app.add_middleware(TokenGate, token=token)
    app.add_middleware(BodyLimit, max_bytes=max_body or max_body_bytes())
    return app


def request_user(claimed: str) -> str:
    """The user a request acts for: the name its client reported (trusted as is; see
    docs/security-authz.md), or ``anonymous`` when it gave none (never the server's own
    user)."""
    return claimed.strip() or ANONYMOUS


def _lifespan(scheduler: Scheduler, waiters: dict[str, list[asyncio.Event]]) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def notify(request_id: str) -> None:
            def wake() -> None:
                for event in waiters.pop(request_id, []):
                    event.set()
            loop.call_soon_threadsafe(wake)

        scheduler.notify = notify
        if not app.state.started:  # an ASGI test client may run the lifespan often
            app.state.started = True
            scheduler.requeue_unfinished()
        yield

    return lifespan


def _token_check(token: str | None) -> Any:
    def check_token(request: Request) -> None:
        if not token:
            return
        if not token_matches(request.headers.get("authorization", ""), token):
            raise HTTPException(status_code=401, detail=UNAUTHORIZED,
                                headers={"WWW-Authenticate": "Bearer"})

    return check_token


def _health_route(home: Path) -> APIRouter:
    router = APIRouter()
    started_at = time.time()

    @router.get("/api/health", response_model=Health)
    async def health() -> Health:
        return Health(status="healthy", version=__version__, api_version=API_VERSION,
                      pid=os.getpid(), started_at=started_at, home=str(home),
                      settings=settings.current())

    return router


def _request_routes(db: RequestDB, scheduler: Scheduler,
                    waiters: dict[str, list[asyncio.Event]]) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.post("/requests", response_model=SubmitReply)
    def submit(body: SubmitBody) -> SubmitReply:
        try:
            return SubmitReply(request_id=scheduler.submit(body.name, body.args,
                                                           request_user(body.user_name),
                                                           body.settings))
        except InvalidRequest as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    @router.get("/requests", response_model=list[RequestRow])
    def listing(request_ids: list[str] | None = Query(None),  # noqa: B008
                all_status: bool = False, user_name: str | None = None,
                prefix: str | None = None, limit: int = Query(1000, ge=1, le=100000),
                ) -> list[dict[str, Any]]:
        if prefix is not None:
            _check_prefix(prefix)
            rows = db.by_prefix(prefix)[:limit]
        else:
            for given in request_ids or []:
                _check_prefix(given)
            rows = db.listing(request_ids=request_ids, all_status=all_status,
                              user_name=user_name, limit=limit)
        return [_shown(row) for row in rows]

    @router.get("/requests/{request_id}", response_model=RequestRow)
    async def one(request_id: str,
                  wait: float = Query(0.0, ge=0.0, le=60.0)) -> dict[str, Any]:
        row = _row_or_404(db, request_id)
        if wait and not RequestStatus(row["status"]).is_finished():
            event = asyncio.Event()
            waiters.setdefault(request_id, []).append(event)
            row = db.get(request_id) or row  # it may have finished meanwhile
            if not RequestStatus(row["status"]).is_finished():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=wait)
                row = db.get(request_id) or row
        return _shown(row)

    @router.get("/requests/{request_id}/logs")
    async def logs(request_id: str, follow: bool = True,
                   tail: int | None = Query(None, ge=0)) -> StreamingResponse:
        row = _row_or_404(db, request_id)
        return StreamingResponse(_stream_log(db, row, follow, tail),
                                 media_type="text/plain; charset=utf-8")

    @router.post("/cancel", response_model=SubmitReply)
    def cancel(body: CancelBody) -> SubmitReply:
        """Answered at once, never queued; recorded as a finished ``api_cancel``.

        No IDs (null): every unfinished request of the caller (of everyone with
        ``all_users``). IDs: each a full ID or a prefix of at least MIN_PREFIX_LENGTH
        characters naming one request, the caller's own unless ``all_users``; one bad ID
        and nothing is cancelled (422 or 403). An empty list cancels nothing.
        """
        user = request_user(body.user_name)
        if body.request_ids is None:
            rows = db.listing(user_name=None if body.all_users else user)
            ids = [r["request_id"] for r in rows]
        else:
            ids = [i for given in body.request_ids
                   if (i := _cancellable(db, given, user, body.all_users))]
        cancelled = scheduler.cancel(ids)
        return SubmitReply(request_id=scheduler.record_done(
            "api_cancel", {"request_ids": body.request_ids, "all_users": body.all_users},
            user, cancelled))

    return router


def _redacted(value: Any) -> Any:
    """Request args as shown to clients: a task's ``secrets`` values never leave the server
    (the worker reads them from the database, not from these replies)."""
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if not isinstance(value, dict):
        return value
    shown = {}
    for key, item in value.items():
        if key == "secrets" and isinstance(item, dict):
            inner = item.get("__map__", item)
            masked = {k: "<redacted>" for k in inner}
            shown[key] = {"__map__": masked} if "__map__" in item else masked
        else:
            shown[key] = _redacted(item)
    return shown


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "args": _redacted(row.get("args"))}


def _check_prefix(prefix: str) -> None:
    if len(prefix) < MIN_PREFIX_LENGTH:
        raise HTTPException(status_code=422, detail=(
            f"request ID prefix {prefix!r} is too short: give at least "
            f"{MIN_PREFIX_LENGTH} characters of the ID"))


def _cancellable(db: RequestDB, given: str, user: str, all_users: bool) -> str | None:
    """The full ID a cancel names (None: no such request); HTTPException if refused."""
    _check_prefix(given)
    rows = db.by_prefix(given)
    if len(rows) > 1:
        raise HTTPException(status_code=422, detail=(
            f"request ID prefix {given!r} is ambiguous ({len(rows)} requests); "
            "give more of the ID"))
    if not rows:
        return None
    owner = rows[0].get("user_name") or ANONYMOUS
    if owner != user and not all_users:
        raise HTTPException(status_code=403, detail=(
            f"request {rows[0]['request_id']} belongs to user {owner!r}, not {user!r}; "
            "nothing was cancelled (all_users=True cancels other users' requests)"))
    return str(rows[0]["request_id"])


def _row_or_404(db: RequestDB, request_id: str) -> dict[str, Any]:
    row = db.get(request_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no request {request_id!r}")
    return row


async def _stream_log(db: RequestDB, row: dict[str, Any], follow: bool,
                      tail: int | None) -> AsyncIterator[bytes]:
    path = Path(row["log_path"])
    position = 0
    if tail is not None:
        lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
        chunk = b"".join(lines[-tail:]) if tail else b""
        position = path.stat().st_size if path.exists() else 0
        if chunk:
            yield chunk
    while True:
        finished = RequestStatus(
            (db.get(row["request_id"]) or row)["status"]).is_finished()
        data = b""
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(position)
                data = handle.read()
        if data:
            position += len(data)
            yield data
            continue
        if finished or not follow:
            return
        await asyncio.sleep(0.05)
