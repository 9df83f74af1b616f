"""A cap on request bodies, enforced before any body is buffered and before auth work.

A raw ASGI middleware, the outermost of the app's own (then ``auth.TokenGate``): a
``Content-Length`` over the limit is answered 413 at once (the body is never read, the
token never looked at); a body without one (chunked) is counted as it streams in and
the request is aborted with 413 as soon as it passes the limit. Either way the
connection is closed, so the rest of the body is never taken in.

``SKYSTATE_API_MAX_BODY_BYTES`` sets the limit (default 32 MiB: a saved plan of 10,000
resources is about 17 MB as a request; a state directory is sent as a path).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


def max_body_bytes() -> int:
    """The configured limit (``SKYSTATE_API_MAX_BODY_BYTES``); ValueError if not a size."""
    text = os.environ.get("SKYSTATE_API_MAX_BODY_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_BODY_BYTES
    value = int(text)
    if value < 1024:
        raise ValueError(f"SKYSTATE_API_MAX_BODY_BYTES={text!r}: give at least 1024 bytes")
    return value


class BodyTooLarge(Exception):
    """Raised into the app by ``receive`` once a streamed body passes the limit."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length == -1:
            await reply(send, 400, "Content-Length is not a valid size")
            return
        if length is not None and length > self.max_bytes:
            await reply(send, 413, self._too_large())
            return
        await self._streamed(scope, receive, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app makes of the abort, the answer is 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await reply(send, 413, self._too_large())

    def _too_large(self) -> str:
        return (f"request body larger than {self.max_bytes} bytes "
                "(the server's SKYSTATE_API_MAX_BODY_BYTES)")


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None if not declared, -1 if malformed."""
    values = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
    if not values:
        return None
    try:
        sizes = {int(v.decode("latin-1").strip()) for v in values}
    except ValueError:
        return -1
    if len(sizes) != 1 or min(sizes) < 0:
        return -1
    return sizes.pop()


async def reply(send: Send, status: int, detail: str,
                extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with ``{"detail": ...}`` (as FastAPI's errors) and close the connection: the
    body the client may still be sending is never read."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": body})
