"""The HTTP front of the API server (FastAPI). Business logic lives in reconcile/.

Every route needs the bearer token when the server has one (always when it listens
beyond loopback). The token is compared in constant time and never logged, stored
in a request or echoed in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
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
from skystate.server.records import RequestDB, RequestStatus
from skystate.server.scheduler import InvalidRequest, Scheduler

API_VERSION = "1"


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    user_name: str = Field(default="", max_length=256)
    settings: dict[str, str | None] = Field(default_factory=dict)  # server.settings


class SubmitReply(BaseModel):
    request_id: str


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_ids: list[str] | None = None
    all_users: bool = False
    user_name: str = Field(default="", max_length=256)


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
               warm: int = 2) -> FastAPI:
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
    return app


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
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                 token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
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
                                                           body.user_name, body.settings))
        except InvalidRequest as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    @router.get("/requests", response_model=list[RequestRow])
    def listing(request_ids: list[str] | None = Query(None),  # noqa: B008
                all_status: bool = False, user_name: str | None = None,
                prefix: str | None = None, limit: int = Query(1000, ge=1, le=100000),
                ) -> list[dict[str, Any]]:
        rows = (db.by_prefix(prefix)[:limit] if prefix else db.listing(
            request_ids=request_ids, all_status=all_status, user_name=user_name, limit=limit))
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
        """Answered at once, never queued; recorded as a finished ``api_cancel``."""
        ids = body.request_ids
        if not ids:
            rows = db.listing(user_name=None if body.all_users else body.user_name or None)
            ids = [r["request_id"] for r in rows]
        else:
            ids = [r["request_id"] for i in ids for r in db.by_prefix(i)]
        cancelled = scheduler.cancel(ids)
        return SubmitReply(request_id=scheduler.record_done(
            "api_cancel", {"request_ids": body.request_ids, "all_users": body.all_users},
            body.user_name, cancelled))

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
