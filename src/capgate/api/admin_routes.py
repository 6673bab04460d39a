"""Operator routes: the dashboard (HTML, behind a login with the admin key) and
/admin/overview (JSON, `Authorization: Bearer ADMIN_KEY`), which `capgate providers` and
`capgate tasks` read.

The dashboard's session is a signed token that expires after 12 hours and that a logout
ends in every server process (capgate.api.dashboard_sessions). Its cookie is HttpOnly,
SameSite=Strict and, when the request came through an HTTPS proxy (X-Forwarded-Proto),
Secure; every state change is a POST. Wrong admin keys, at the log-in form or as a
Bearer token, are throttled per client address (capgate.api.login_throttle). Every
secret is compared as bytes: compare_digest refuses non-ASCII str.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from urllib.parse import parse_qs

import msgspec

from capgate import forms
from capgate.api.dashboard_page import dashboard_page, login_page
from capgate.api.dashboard_sessions import DashboardSessions
from capgate.api.http import Request, Response
from capgate.api.login_throttle import LoginThrottle
from capgate.api.routing import Handler, Route, Routes
from capgate.clock import Clock
from capgate.model import CapgateError
from capgate.overview import gather
from capgate.router import Router
from capgate.store.base import Store

log = logging.getLogger("capgate.api")

HTML = b"text/html; charset=utf-8"
_COOKIE = "capgate_admin"


def mount_admin(
    routes: Routes,
    store: Store,
    router: Router,
    clock: Clock,
    key: str,
    *,
    data: Path | None = None,
) -> None:
    """Serve /dashboard, /dashboard/login, /dashboard/logout and /admin/overview.

    `data` is the data directory, where a logout is written for every server process to
    read (None: it holds in this process only)."""
    secret = key.encode("utf-8", "surrogatepass")
    sessions = DashboardSessions(key, clock, data)
    throttle = LoginThrottle(clock)

    def signed_in(request: Request) -> bool:
        token = _cookie(request)
        return token is not None and sessions.valid(token)

    def bearer(request: Request) -> bytes | None:
        """The Bearer token, if the request carries one."""
        scheme, _, token = (request.header(b"authorization") or b"").partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" and token.strip() else None

    async def overview(request: Request) -> Response:
        token = bearer(request)
        wait = throttle.retry_after(request.client_ip) if token is not None else 0
        if wait:
            message = f"too many wrong admin keys from your address; try again in {wait} s"
            body = msgspec.json.encode({"error": message})
            return Response(body, status=429, headers=_retry_after(wait))
        if token is None or not hmac.compare_digest(token, secret):
            if token is not None:
                throttle.failed(request.client_ip)
            return Response(b'{"error":"send Authorization: Bearer ADMIN_KEY"}', status=401)
        throttle.succeeded(request.client_ip)
        recent = _number(request.query, "recent", 20, 1, 1000)
        return Response(msgspec.json.encode(await gather(store, router, clock.now(), recent)))

    async def dashboard(request: Request) -> Response:
        if not signed_in(request):
            return Response(login_page(), content_type=HTML, headers=_NO_STORE)
        refresh = _number(request.query, "refresh", 5, 1, 300)
        page = dashboard_page(await gather(store, router, clock.now()), refresh)
        return Response(page, content_type=HTML, headers=_NO_STORE)

    async def login(request: Request) -> Response:
        if request.method != "POST":
            return _see_other("/dashboard")
        wait = throttle.retry_after(request.client_ip)
        if wait:
            # Refused unread, the right key too: see capgate.api.login_throttle.
            page = login_page(f"Too many wrong keys from your address. Try again in {wait} s.")
            return Response(page, status=429, content_type=HTML, headers=_retry_after(wait))
        try:
            given = dict(forms.urlencoded(request.body)).get("key", "").strip()
        except forms.FormError:
            page = login_page("That form cannot be read.")
            return Response(page, status=400, content_type=HTML, headers=_NO_STORE)
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret):
            throttle.failed(request.client_ip)
            log.warning("dashboard: a log-in with a wrong admin key from %s", request.client_ip)
            page = login_page("That is not the admin key.")
            return Response(page, status=401, content_type=HTML, headers=_NO_STORE)
        throttle.succeeded(request.client_ip)
        cookie = _session_cookie(sessions.issue().decode(), int(sessions.lifetime), request)
        return _see_other("/dashboard", cookie)

    async def logout(request: Request) -> Response:
        if request.method != "POST":
            return _see_other("/dashboard")
        # Only a signed-in operator ends the sessions; anyone may drop their own cookie.
        if signed_in(request):
            sessions.end_all()
        return _see_other("/dashboard", _session_cookie("", 0, request))

    routes.add("/admin/overview", Route(_guard(overview), _error))
    routes.add("/dashboard", Route(_guard(dashboard), _error))
    routes.add("/dashboard/login", Route(_guard(login), _error))
    routes.add("/dashboard/logout", Route(_guard(logout), _error))


_NO_STORE = [(b"cache-control", b"no-store")]


def _retry_after(seconds: int) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(seconds).encode()), *_NO_STORE]


def _cookie(request: Request) -> bytes | None:
    """The session cookie's value, as bytes (it is never decoded)."""
    for part in (request.header(b"cookie") or b"").split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == _COOKIE.encode():
            return value.strip()
    return None


def _session_cookie(token: str, max_age: int, request: Request) -> str:
    """Set-Cookie for a session (an empty token and max_age 0 delete it).

    Secure when a proxy says the client came over HTTPS. The header is trusted for this
    alone: faked on a plain-HTTP request, it only keeps that client's own cookie from
    coming back to it.
    """
    cookie = f"{_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    proto = (request.header(b"x-forwarded-proto") or b"").split(b",")[0].strip().lower()
    return cookie + "; Secure" if proto == b"https" else cookie


def _number(query: bytes, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter (?refresh=N: seconds between the page's reloads;
    ?recent=N: recent tasks in the overview), clamped; junk means the default."""
    values = parse_qs(query.decode("latin-1")).get(name)
    try:
        return max(low, min(high, int(values[0]))) if values else default
    except ValueError:
        return default


def _see_other(location: str, cookie: str | None = None) -> Response:
    headers = [(b"location", location.encode())]
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode()))
    return Response(b"", status=303, content_type=HTML, headers=headers + _NO_STORE)


def _guard(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception:
            log.exception("unexpected error on %s", request.path)
            return Response(b'{"error":"temporary server error; try again"}', status=503)

    return guarded


def _error(error: CapgateError) -> Response:
    return Response(msgspec.json.encode({"error": error.description}), status=400)
