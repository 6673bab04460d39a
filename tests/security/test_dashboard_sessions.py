"""Dashboard sessions end: a logout ends them (in every server process), they expire after
12 hours, the cookie is HttpOnly / SameSite=Strict / Max-Age (Secure behind an HTTPS
proxy), and guessing the admin key is throttled per client address: after 5 wrong keys in
a minute every attempt from that address, the right key too, gets 429 until the oldest
failure is a minute old."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
import pytest

from tests.support import CapgateServer, ServerFactory

pytestmark = pytest.mark.system

ADMIN = "dashboard-sessions-admin-key"
FORM = {"content-type": "application/x-www-form-urlencoded"}
TWELVE_HOURS = 12 * 3600


@pytest.fixture
def admin_server(start_server: ServerFactory) -> CapgateServer:
    return start_server(None, admin_key=ADMIN, local_solving="false")


def log_in(base: str, key: str = ADMIN, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST the log-in form on a connection of its own (no cookie jar)."""
    return httpx.post(
        base + "/dashboard/login",
        content=f"key={key}".encode(),
        headers={**FORM, **(headers or {})},
        follow_redirects=False,
    )


def session_of(answer: httpx.Response) -> str:
    assert answer.status_code == 303, (answer.status_code, answer.text[:200])
    name, _, rest = answer.headers["set-cookie"].partition("=")
    assert name == "capgate_admin"
    return rest.split(";")[0]


def shows_dashboard(base: str, session: str) -> bool:
    page = httpx.get(base + "/dashboard", headers={"cookie": f"capgate_admin={session}"})
    assert page.status_code == 200
    if 'id="tasks"' in page.text:
        return True
    assert 'id="key"' in page.text  # the log-in page
    return False


def log_out(base: str, session: str) -> httpx.Response:
    return httpx.post(base + "/dashboard/logout", headers={"cookie": f"capgate_admin={session}"})


def test_the_cookie_flags(admin_server: CapgateServer) -> None:
    answer = log_in(admin_server.base)
    attributes = {a.strip().split("=")[0] for a in answer.headers["set-cookie"].split(";")[1:]}
    assert attributes == {"Path", "Max-Age", "HttpOnly", "SameSite"}
    assert f"Max-Age={TWELVE_HOURS}" in answer.headers["set-cookie"]
    assert "SameSite=Strict" in answer.headers["set-cookie"]
    assert "Path=/" in answer.headers["set-cookie"]
    assert session_of(answer) != session_of(log_in(admin_server.base)), "sessions are random"
    # Behind a proxy that says the client came over HTTPS, the cookie is Secure too.
    answer = log_in(admin_server.base, headers={"x-forwarded-proto": "https"})
    assert answer.headers["set-cookie"].endswith("; Secure")
    gone = log_out(admin_server.base, session_of(answer))
    assert "Max-Age=0" in gone.headers["set-cookie"]


def test_a_logout_ends_the_session_for_a_replay(admin_server: CapgateServer) -> None:
    session = session_of(log_in(admin_server.base))
    other = session_of(log_in(admin_server.base))
    assert shows_dashboard(admin_server.base, session)
    assert log_out(admin_server.base, session).status_code == 303
    assert not shows_dashboard(admin_server.base, session), "the cookie outlived the logout"
    # A logout ends every session of the (one) admin key, a stolen copy included.
    assert not shows_dashboard(admin_server.base, other)
    # Logging in again works at once.
    assert shows_dashboard(admin_server.base, session_of(log_in(admin_server.base)))


def test_the_old_fixed_cookie_is_no_session(admin_server: CapgateServer) -> None:
    fixed = hmac.new(ADMIN.encode(), b"capgate dashboard session", hashlib.sha256).hexdigest()
    assert not shows_dashboard(admin_server.base, fixed)
    session = session_of(log_in(admin_server.base))
    # Its last digit changed (to a digit it is not: one session in 16 ends in "0").
    forged = session[:-1] + ("1" if session.endswith("0") else "0")
    assert forged != session and not shows_dashboard(admin_server.base, forged)


def test_a_session_expires_after_twelve_hours(admin_server: CapgateServer) -> None:
    session = session_of(log_in(admin_server.base))
    admin_server.advance(TWELVE_HOURS - 60)
    assert shows_dashboard(admin_server.base, session)
    admin_server.advance(61)
    assert not shows_dashboard(admin_server.base, session)


def test_a_logout_holds_in_every_process_sharing_the_data_directory(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Two server processes on one data directory (as `serve --workers N` runs them):
    a session made by one works on the other, and a logout on either ends it on both."""
    data = tmp_path / "shared"
    first = start_server(data, admin_key=ADMIN, local_solving="false")
    second = start_server(data, admin_key=ADMIN, local_solving="false")
    session = session_of(log_in(first.base))
    assert shows_dashboard(second.base, session)
    log_out(second.base, session)
    assert not shows_dashboard(first.base, session)
    assert not shows_dashboard(second.base, session)
    fresh = session_of(log_in(first.base))
    assert shows_dashboard(second.base, fresh)
    # A restart does not bring an ended session back.
    first.stop()
    again = start_server(data, admin_key=ADMIN, local_solving="false")
    assert not shows_dashboard(again.base, session)
    assert shows_dashboard(again.base, fresh)


def test_a_logout_holds_under_serve_workers(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "workers", "--workers", "2", admin_key=ADMIN, local_solving="false",
        test_clock="0",
    )  # fmt: skip
    session = session_of(log_in(server.base))
    # Each request on a connection of its own, so both processes answer some.
    assert all(shows_dashboard(server.base, session) for _ in range(12))
    log_out(server.base, session)
    assert not any(shows_dashboard(server.base, session) for _ in range(12))


def test_wrong_keys_are_throttled_and_the_right_one_waits_too(
    admin_server: CapgateServer,
) -> None:
    base = admin_server.base
    for _ in range(5):
        answer = log_in(base, "not the admin key")
        assert answer.status_code == 401 and "not the admin key" in answer.text
    for key in ("still wrong", ADMIN):  # refused unread: no oracle during the lockout
        answer = log_in(base, key)
        assert answer.status_code == 429, answer.text[:200]
        assert "Too many wrong keys" in answer.text and 'id="key"' in answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert "set-cookie" not in answer.headers
    # Another address is not held up (uvicorn takes X-Forwarded-For from 127.0.0.1).
    assert log_in(base, headers={"x-forwarded-for": "10.1.2.3"}).status_code == 303
    # The Bearer route shares the count.
    answer = httpx.get(base + "/admin/overview", headers={"authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 429 and "retry-after" in answer.headers
    admin_server.advance(61)
    assert shows_dashboard(base, session_of(log_in(base)))


def test_wrong_bearer_tokens_are_throttled(admin_server: CapgateServer) -> None:
    url = admin_server.base + "/admin/overview"
    for _ in range(5):
        assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    answer = httpx.get(url, headers={"authorization": "Bearer wrong"})
    assert answer.status_code == 429 and "try again in" in answer.json()["error"]
    # No token at all is no guess: still a plain 401.
    assert httpx.get(url).status_code == 401
    admin_server.advance(61)
    answer = httpx.get(url, headers={"authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200


def test_the_throttle_table_is_bounded() -> None:
    from capgate.api.login_throttle import LoginThrottle
    from capgate.clock import OffsetClock

    clock = OffsetClock()
    throttle = LoginThrottle(clock, max_failures=2, window=60, max_addresses=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) == 100
    # The newest addresses are still counted; an IPv6 /64 is one address.
    throttle.failed("10.0.39.15")
    assert throttle.retry_after("10.0.39.15") > 0
    throttle.failed("2001:db8::1")
    throttle.failed("2001:db8::ffff:1")
    assert throttle.retry_after("2001:db8::2") > 0
    assert throttle.retry_after("2001:db9::1") == 0
    clock.advance(61)
    assert throttle.retry_after("2001:db8::2") == 0
