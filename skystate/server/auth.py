"""The bearer-token check, made on the request's headers before its body is read.

``TokenGate`` is a raw ASGI middleware (inside ``BodyLimit``, outside everything else): a
request without the server's token is answered 401 before any of its body is taken in,
so an unauthenticated client cannot make the server buffer a body at all. The app's
route dependency makes the same check again (``token_matches``), as a second line.
"""

from __future__ import annotations

import hmac

from skystate.server.body_limit import ASGIApp, Receive, Scope, Send, reply

UNAUTHORIZED = "missing or wrong bearer token"


def token_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries the token (constant-time compare)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


class TokenGate:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v for k, v in scope.get("headers", []) if k.lower() ==
                           b"authorization"), b"")
            if not token_matches(header.decode("latin-1"), self.token):
                await reply(send, 401, UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)
