"""granian's RSGI server (capgate.api.rsgi, the default of `capgate serve`) answers as the
uvicorn ASGI server does: the same statuses, content types and bodies for errors, unknown
paths, wrong methods and oversized bodies, the same bounds on slow clients, and the App's
startup and shutdown around it."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import httpx
import pytest

from tests.support import (
    BOOTSTRAP_KEY,
    CapgateServer,
    ServerFactory,
    captchas,
    image_task,
    seconds_until_closed,
)

pytestmark = pytest.mark.system

LIMIT = 20_000
READ_TIMEOUT = 2.0


@pytest.fixture
def both(start_server: ServerFactory, tmp_path: Path) -> dict[str, CapgateServer]:
    """The same settings served by granian (RSGI) and by uvicorn (ASGI)."""
    return {
        name: start_server(
            tmp_path / name,
            "--server",
            name,
            local_solving="false",
            max_request_bytes=str(LIMIT),
            request_read_timeout_seconds=str(READ_TIMEOUT),
        )
        for name in ("granian", "uvicorn")
    }


def answer(server: CapgateServer, method: str, path: str, **kwargs: object) -> tuple[int, str, str]:
    response = server.http.request(method, path, **kwargs)  # type: ignore[arg-type]
    return response.status_code, response.headers.get("content-type", ""), response.text


CASES: list[tuple[str, str, dict[str, object]]] = [
    ("GET", "/healthz", {}),
    ("GET", "/no/such/route", {}),
    ("GET", "/createTask", {}),
    ("POST", "/getTaskResult", {"json": {"clientKey": BOOTSTRAP_KEY, "taskId": 10**12}}),
    ("POST", "/getTaskResult/", {"json": {"clientKey": BOOTSTRAP_KEY, "taskId": 10**12}}),
    ("POST", "/getTaskResult", {"json": {"clientKey": "0" * 32, "taskId": 1}}),
    ("POST", "/createTask", {"content": b"{not json"}),
    ("POST", "/createTask", {"content": b""}),
    ("POST", "/createTask", {"json": {"clientKey": BOOTSTRAP_KEY, "task": {"type": "Nope"}}}),
    ("POST", "/createTask", {"content": b'{"clientKey":"' + b"a" * (LIMIT + 10) + b'"}'}),
    ("POST", "/in.php", {"data": {"key": BOOTSTRAP_KEY, "method": "nothing"}}),
    ("GET", "/res.php?key=x&action=get&id=1", {}),
    ("POST", "/getBalance", {"json": {"clientKey": BOOTSTRAP_KEY}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES, ids=[f"{m} {p}" for m, p, _ in CASES])
def test_the_same_answer_from_both_servers(
    both: dict[str, CapgateServer], method: str, path: str, kwargs: dict[str, object]
) -> None:
    granian = answer(both["granian"], method, path, **kwargs)
    uvicorn = answer(both["uvicorn"], method, path, **kwargs)
    assert granian == uvicorn
    assert granian[0] < 500


def test_a_task_round_trip_is_the_same(both: dict[str, CapgateServer]) -> None:
    task = {"type": "ImageToTextTask", "body": "iVBORw0KGgo" + "A" * 200}
    results = {}
    for name, server in both.items():
        created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": task})
        got = server.post(
            "/getTaskResult", {"clientKey": BOOTSTRAP_KEY, "taskId": created.get("taskId")}
        )
        results[name] = (sorted(created), created.get("errorCode"), got.get("status"))
    assert results["granian"] == results["uvicorn"]


def test_a_chunked_body_over_the_limit_is_refused(both: dict[str, CapgateServer]) -> None:
    def chunks() -> object:
        for _ in range(LIMIT // 1000 + 5):
            yield b"a" * 1000

    answers = {}
    for name, server in both.items():
        response = server.http.post("/createTask", content=chunks())  # type: ignore[arg-type]
        answers[name] = (response.status_code, response.text)
    assert answers["granian"] == answers["uvicorn"]
    assert "larger than" in answers["granian"][1]


def closed_after(port: int, sent: bytes) -> tuple[float, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(sent)
    return seconds_until_closed(sock)


def test_a_slow_body_is_cut_off_with_408(both: dict[str, CapgateServer]) -> None:
    half = (
        b"POST /createTask HTTP/1.1\r\nHost: capgate\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"clientKe'
    )
    for name, server in both.items():
        took, received = closed_after(server.port, half)
        assert took < READ_TIMEOUT + 3, name
        assert received.startswith(b"HTTP/1.1 408 "), (name, received)


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    both: dict[str, CapgateServer],
) -> None:
    from capgate.api.rsgi import TrustedProxies

    local = TrustedProxies("127.0.0.1,::1")
    assert local.client("203.0.113.7") == "203.0.113.7"
    assert local.client("203.0.113.7, 127.0.0.1") == "203.0.113.7"
    assert "10.0.0.1" not in local
    assert "*" not in local
    assert TrustedProxies("10.0.0.0/8").client("198.51.100.1, 10.1.2.3") == "198.51.100.1"
    assert TrustedProxies("*").client("198.51.100.1, 10.1.2.3") == "198.51.100.1"
    # Sent through the servers, the header changes nothing in the answer.
    headers = {"x-forwarded-for": "203.0.113.7", "x-request-id": "abc"}
    payload = {"clientKey": BOOTSTRAP_KEY, "taskId": 5}
    assert answer(both["granian"], "POST", "/getTaskResult", json=payload, headers=headers) == (
        answer(both["uvicorn"], "POST", "/getTaskResult", json=payload, headers=headers)
    )


def test_granian_starts_and_stops_the_app(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server(tmp_path / "g", "--server", "granian", local_solving="false")
    created = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": {"type": "ImageToTextTask", "body": "A" * 200}},
    )
    assert "errorId" in created
    process = server.process
    assert process is not None
    server.stop()  # SIGTERM: the App's shutdown runs, the process exits cleanly.
    assert process.returncode == 0
    log = server.log.read_text()
    assert "Traceback" not in log, log
    # The store was opened (startup) and is whole: a second start serves the same data.
    again = start_server(tmp_path / "g", "--server", "granian", local_solving="false")
    assert again.http.get("/healthz").status_code == 200
    with httpx.Client(base_url=again.base) as client:
        payload = {"clientKey": BOOTSTRAP_KEY}
        balance = json.loads(client.post("/getBalance", json=payload).text)
    assert balance.get("errorId") == 0


def test_past_max_connections_requests_in_progress_a_new_one_gets_503(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """granian cannot count idle connections (docs/configuration.md, http_server); requests
    in progress it does, and answers 503 past `max_connections` of them."""
    server = start_server(
        tmp_path / "g", "--server", "granian", local_solving="false", max_connections="2"
    )
    half = (
        b"POST /createTask HTTP/1.1\r\nHost: capgate\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"clientKe'
    )
    busy = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(half)
        time.sleep(0.3)
        with httpx.Client(base_url=server.base, timeout=10) as fresh:
            assert fresh.get("/healthz").status_code == 503
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.5)
    assert server.http.get("/healthz").status_code == 200


def test_raw_non_ascii_in_the_path_or_query_is_no_server_error(
    both: dict[str, CapgateServer],
) -> None:
    for name, server in both.items():
        for target in (b"/res.php?key=\xcc\x85&action=get&id=1", b"/task/result/\xcc\x85"):
            _, received = closed_after(
                server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            status = int(received.split(b" ", 2)[1]) if received else 0
            assert 0 < status < 500, (name, target, received[:200])


def test_a_client_gone_before_its_body_is_whole_is_no_error(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """A client that closes its connection partway through a body (a load generator
    stopping, a dropped link, or someone doing it on purpose to fill the log) costs the
    server nothing: granian cancels the body's read, and capgate neither logs a traceback
    nor answers anything but the next client."""
    server = start_server(tmp_path / "g", "--server", "granian", local_solving="false")
    half = (
        b"POST /createTask HTTP/1.1\r\nHost: capgate\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"clientKe'
    )
    for reset in (False, True) * 10:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            if reset:  # Closed with a reset (RST) rather than an orderly FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(half)
            time.sleep(0.01)  # The read has begun before the client goes.
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})
    assert balance.get("errorId") == 0, balance
    time.sleep(0.2)  # Any log line of the closed reads is written by now.
    log = server.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_a_request_whose_client_left_leaves_no_traceback_at_sigterm(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """granian cancels, as it stops, a request in progress whose client has gone (here a
    long poll): it ends quietly, and the process exits cleanly, instead of a traceback in
    the log for each such request."""
    server = start_server(tmp_path / "g", "--server", "granian", local_solving="false")
    image, _ = captchas(1, 1)[0]
    created = server.post("/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(image)})
    payload = {"clientKey": BOOTSTRAP_KEY, "taskId": created["taskId"], "waitSeconds": 3}
    body = json.dumps(payload).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /getTaskResult HTTP/1.1\r\nHost: capgate\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        time.sleep(0.3)  # the long poll is waiting on the server; then the client leaves
    time.sleep(0.2)
    process = server.process
    assert process is not None
    server.stop()
    assert process.returncode == 0
    log = server.log.read_text()
    assert "Traceback" not in log, log
