"""Callbacks from a real server to a real receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import msgspec
import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory

pytestmark = pytest.mark.system

TURNSTILE = {
    "type": "TurnstileTaskProxyless",
    "websiteURL": "https://example.com/",
    "websiteKey": "1x00000000000000000000AA",
}


class Receiver:
    """An HTTP server that records what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    listening = Receiver()
    yield listening
    listening.close()


def test_callbacks_reach_an_allowed_receiver_signed(
    start_server: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    server: CapgateServer = start_server(
        tmp_path / "cb",
        callback_hosts="127.0.0.1",
        callback_allow_networks="127.0.0.0/8",
    )
    created = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": TURNSTILE, "callbackUrl": f"{receiver.url}/hook"},
    )
    assert created["errorId"] == 0, created
    pinged = server.http.post(
        "/in.php",
        data={
            "key": BOOTSTRAP_KEY,
            "method": "turnstile",
            "sitekey": "1x00000000000000000000AA",
            "pageurl": "https://example.com/",
            "pingback": f"{receiver.url}/ping",
        },
    )
    assert pinged.text.startswith("OK|")
    receiver.wait(2)
    by_path = {path: (headers, body) for path, headers, body in receiver.received}
    secret = (tmp_path / "cb" / "callback.key").read_text().strip().encode()
    headers, body = by_path["/hook"]
    assert headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert headers["X-Capgate-Signature"] == expected
    assert msgspec.json.decode(body) == {
        "errorId": 0,
        "taskId": created["taskId"],
        "status": "ready",
        "solution": {"token": "XXXX.DUMMY.TOKEN.XXXX"},
    }
    headers, body = by_path["/ping"]
    assert parse_qs(body.decode()) == {
        "id": [pinged.text[3:]],
        "code": ["XXXX.DUMMY.TOKEN.XXXX"],
    }


def test_a_callback_to_a_refused_range_never_leaves(
    start_server: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    # 127.0.0.1 is on the host allow-list, but loopback is not an allowed network.
    server = start_server(tmp_path / "cb", callback_hosts="127.0.0.1")
    created = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": TURNSTILE, "callbackUrl": f"{receiver.url}/hook"},
    )
    assert server.wait_final(BOOTSTRAP_KEY, created["taskId"])["status"] == "ready"
    receiver.wait(1, seconds=2.0)
    assert receiver.received == []


def test_a_callback_host_off_the_allow_list_is_refused_at_create(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "cb", callback_hosts="hooks.example.com")
    before = server.db_counts()
    answer = server.post(
        "/createTask",
        {
            "clientKey": BOOTSTRAP_KEY,
            "task": TURNSTILE,
            "callbackUrl": "http://169.254.169.254/latest/meta-data",
        },
    )
    assert answer["errorId"] == 110 and "allow-list" in answer["errorDescription"]
    assert server.db_counts() == before
    # An empty callbackUrl means none (CLIENTS.md rule 7).
    answer = server.post(
        "/createTask", {"clientKey": BOOTSTRAP_KEY, "task": TURNSTILE, "callbackUrl": ""}
    )
    assert answer["errorId"] == 0


def test_a_task_that_times_out_still_calls_back(
    start_server: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path / "cb",
        local_solving="false",
        callback_hosts="127.0.0.1",
        callback_allow_networks="127.0.0.1/32",
    )
    created = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": TURNSTILE, "callbackUrl": f"{receiver.url}/late"},
    )
    server.advance(121)  # past the deadline; the sweep fails the task and refunds it
    receiver.wait(1)
    ((path, _, body),) = receiver.received
    assert path == "/late"
    answer = msgspec.json.decode(body)
    assert (answer["errorId"], answer["taskId"]) == (12, created["taskId"])
    assert "deadline" in answer["errorDescription"]
