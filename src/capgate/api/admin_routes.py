"""Operator routes: the dashboard (HTML, behind a login with the admin key) and
/admin/overview (JSON, `Authorization: Bearer ADMIN_KEY`), which `capgate providers` and
`capgate tasks` read.

The dashboard's session is a cookie holding an HMAC of the admin key: it needs no server
state, works on every node that shares the key, and dies when the key changes. It is
HttpOnly and SameSite=Strict, and every state change is a POST.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import parse_qs

import msgspec

from capgate.api.dashboard_page import dashboard_page, login_page
from capgate.api.http import Request, Response
from capgate.api.routing import Handler, Route, Routes
from capgate.clock import Clock
from capgate.model import CapgateError
from capgate.overview import gather
from capgate.router import Router
from capgate.store.base import Store

log = logging.getLogger("capgate.api")

HTML = b"text/html; charset=utf-8"
_COOKIE = "capgate_admin"


def mount_admin(routes: Routes, store: Store, router: Router, clock: Clock, key: str) -> None:
    """Serve /dashboard, /dashboard/login, /dashboard/logout and /admin/overview."""
    session = hmac.new(key.encode(), b"capgate dashboard session", hashlib.sha256).hexdigest()

    def signed_in(request: Request) -> bool:
        cookies = (request.header(b"cookie") or b"").decode("latin-1")
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == _COOKIE and hmac.compare_digest(value, session):
                return True
        return False

    def bearer_ok(request: Request) -> bool:
        given = (request.header(b"authorization") or b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), key)

    async def overview(request: Request) -> Response:
        if not bearer_ok(request):
            return Response(b'{"error":"send Authorization: Bearer ADMIN_KEY"}', status=401)
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
        form = parse_qs(request.body.decode("utf-8", "replace"))
        given = (form.get("key") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            log.warning("dashboard: a log-in with a wrong admin key from %s", request.client_ip)
            page = login_page("That is not the admin key.")
            return Response(page, status=401, content_type=HTML, headers=_NO_STORE)
        cookie = f"{_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"
        return _see_other("/dashboard", cookie)

    async def logout(request: Request) -> Response:
        if request.method != "POST":
            return _see_other("/dashboard")
        return _see_other("/dashboard", f"{_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")

    routes.add("/admin/overview", Route(_guard(overview), _error))
    routes.add("/dashboard", Route(_guard(dashboard), _error))
    routes.add("/dashboard/login", Route(_guard(login), _error))
    routes.add("/dashboard/logout", Route(_guard(logout), _error))


_NO_STORE = [(b"cache-control", b"no-store")]


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
