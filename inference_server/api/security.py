# SPDX-License-Identifier: GPL-3.0-or-later
"""Who may use the server: a local tool that a web page must not be able to drive.

  * the server binds 127.0.0.1 unless started with ``--allow-remote`` and a token from the environment;
  * every request needs ``Authorization: Bearer <token>`` (compared in constant time), or the docs cookie;
  * a request carrying a foreign ``Origin`` (any web page other than one served from loopback) gets 403, and while
    bound to loopback a ``Host`` other than 127.0.0.1/localhost/[::1] gets 403 (DNS rebinding);
  * request bodies are capped (413) before any parsing.

A browser cannot send ``Authorization: Bearer`` when a person opens a page, so the docs work as Jupyter's do: open
``/docs?token=<token>`` once; the middleware checks the token, answers with a redirect to ``/docs`` (the token leaves
the address bar) and sets an HttpOnly, ``SameSite=Strict`` cookie holding an HMAC of the token, never the token
itself, which it then accepts like the bearer header. Cross-site use stays impossible: a strict cookie is not sent on
requests started by another site, and a foreign ``Origin`` or ``Host`` is refused first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
from typing import Any

from .docs_routes import DOCS_PATH

COOKIE_NAME = "strata_docs"
_LOCAL_ORIGIN = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")
_LOCAL_HOST = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")


def cookie_value(token: str) -> str:
    """What the docs cookie holds: a keyed hash of the token (a leaked cookie does not reveal the token)."""
    return hmac.new(token.encode("utf-8"), b"strata docs session", hashlib.sha256).hexdigest()


def cookie_header(token: str) -> bytes:
    return (f"{COOKIE_NAME}={cookie_value(token)}; Path=/; HttpOnly; SameSite=Strict").encode("latin-1")


def presented_cookie(cookie_header_value: bytes) -> bytes:
    """The docs cookie's value from a ``Cookie`` header, or b''."""
    for part in cookie_header_value.split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == COOKIE_NAME.encode():
            return value.strip()
    return b""


def _json_response(status: int, detail: str,
                   extra_headers: list[tuple[bytes, bytes]] | None = None) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])}, body


class GuardMiddleware:
    """Origin/Host checks, bearer token, body size cap. Pure ASGI, before routing: it covers every path and sees the
    raw body."""

    def __init__(self, app, token: str, allow_remote: bool, max_upload_bytes: int) -> None:
        self.app = app
        self.token_text = token
        self.token = token.encode("utf-8")
        self.allow_remote = allow_remote
        self.max_upload_bytes = max_upload_bytes
        self.docs_cookie = cookie_value(token).encode("ascii")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value)

        async def reject(status: int, detail: str, extra=None):
            start, body = _json_response(status, detail, extra)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        origin = headers.get("origin")
        if origin is not None and not _LOCAL_ORIGIN.match(origin.decode("latin-1")):
            return await reject(403, f"cross-site request refused: Origin {origin.decode('latin-1')!r} is not this "
                                     f"machine; only local clients may use the Strata server")
        host = headers.get("host")
        if not self.allow_remote and host is not None and not _LOCAL_HOST.match(host.decode("latin-1")):
            return await reject(403, f"Host {host.decode('latin-1')!r} refused: this server answers only to "
                                     f"127.0.0.1/localhost (start it with --allow-remote to serve other names)")
        if scope["path"] == DOCS_PATH and scope["method"] == "GET":
            query_token = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            if query_token:
                # /docs?token=...: a browser's way in. Checked like the header, then traded for the docs cookie
                # and a redirect that takes the token out of the address bar.
                if not hmac.compare_digest(query_token[0].encode("utf-8"), self.token):
                    return await reject(401, "wrong token in /docs?token=...; use the token the server printed or "
                                             "STRATA_TOKEN")
                await send({"type": "http.response.start", "status": 303, "headers": [
                    (b"location", DOCS_PATH.encode()), (b"content-length", b"0"),
                    (b"set-cookie", cookie_header(self.token_text)),
                    (b"cache-control", b"no-store")]})
                await send({"type": "http.response.body", "body": b""})
                return
        authorization = headers.get("authorization", b"")
        scheme, _, presented = authorization.partition(b" ")
        # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
        bearer_ok = scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self.token)
        cookie = presented_cookie(headers.get("cookie", b""))
        if not bearer_ok and not (cookie and hmac.compare_digest(cookie, self.docs_cookie)):
            reason = "missing" if not authorization else "wrong"
            return await reject(401, f"{reason} bearer token: send 'Authorization: Bearer <token>' with the token the "
                                     f"server printed or STRATA_TOKEN (in a browser: open /docs?token=<token>)",
                                [(b"www-authenticate", b"Bearer")])

        limit = self.max_upload_bytes
        declared = headers.get("content-length")
        if declared is not None:
            try:
                declared_bytes = int(declared)
            except ValueError:
                return await reject(400, "Content-Length is not a number")
            if declared_bytes > limit:
                return await reject(413, f"request body is {declared_bytes / 2**20:.1f} MiB; the limit is "
                                         f"{limit / 2**20:.1f} MiB (start the server with a larger --max-upload-mib)")
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)

        # Read the whole body here (bounded), so chunked uploads without Content-Length are capped too.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await reject(413, f"request body exceeds the {limit / 2**20:.1f} MiB limit (start the server "
                                         f"with a larger --max-upload-mib)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
