"""Callbacks go only where the operator allowed, at every hop and on every connection:
a redirect cannot hand a delivery to another host, and a name that resolves to an allowed
address when checked cannot land the POST on another address when connected."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from capgate.callbacks import Deliverer
from capgate.model import TaskStatus, TaskType
from tests.support import BOOTSTRAP_KEY, ServerFactory, make_task

TURNSTILE = {
    "type": "TurnstileTaskProxyless",
    "websiteURL": "https://example.com/",
    "websiteKey": "1x00000000000000000000AA",
}


class Receiver:
    """An HTTP(S) server on one loopback address that records what it is sent; a path in
    `redirects` answers 302 to the URL it maps to."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.received: list[tuple[str, dict[str, str]]] = []
        self.redirects: dict[str, str] = {}
        received, redirects = self.received, self.redirects

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, dict(self.headers)))
                if self.path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[self.path])
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for path, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.system
def test_a_redirect_to_another_host_is_not_followed(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    first, second = Receiver(), Receiver()
    try:
        # `localhost` is as reachable as 127.0.0.1 here, but only 127.0.0.1 is allowed.
        first.redirects["/away"] = f"http://localhost:{second.port}/stolen"
        first.redirects["/moved"] = f"{second.url}/same-host"
        server = start_server(
            tmp_path / "cb",
            callback_hosts="127.0.0.1",
            callback_allow_networks="127.0.0.0/8,::1/128",
        )
        for path in ("/away", "/moved"):
            created = server.post(
                "/createTask",
                {"clientKey": BOOTSTRAP_KEY, "task": TURNSTILE, "callbackUrl": first.url + path},
            )
            assert created["errorId"] == 0, created
        wait_until(lambda: "/same-host" in second.paths() and len(first.received) == 2)
        time.sleep(1.0)  # Time enough for a followed redirect to arrive.
        assert sorted(first.paths()) == ["/away", "/moved"]
        assert second.paths() == ["/same-host"]  # The same host's redirect is followed.
    finally:
        first.close()
        second.close()


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """`rebind.test` resolves to 127.0.0.2 the first time, then to 127.0.0.1: the answers
    a name under an attacker's control gives. Yields the answers given, in order."""
    real = socket.getaddrinfo
    answers: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not str(name).endswith(".test"):
            return real(host, port, *args, **kwargs)
        if name != "rebind.test":
            raise socket.gaierror(socket.EAI_NONAME, "unknown test name")
        answers.append("127.0.0.2" if not answers else "127.0.0.1")
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield answers


def receivers_on_one_port(tls: ssl.SSLContext | None = None) -> tuple[Receiver, Receiver]:
    """A receiver on 127.0.0.2 and another on 127.0.0.1, on the same port."""
    for _ in range(20):
        checked = Receiver("127.0.0.2", tls=tls)
        try:
            return checked, Receiver("127.0.0.1", checked.port, tls=tls)
        except OSError:  # That port is taken on 127.0.0.1: try another.
            checked.close()
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def deliver(deliverer: Deliverer, url: str) -> None:
    """Deliver one finished task's callback to `url` and wait for the outcome."""
    task = make_task(TaskStatus.READY, TaskType.TURNSTILE, params={"callbackUrl": url})

    async def run() -> None:
        deliverer.deliver(task)
        for _ in range(500):
            if deliverer.delivered or deliverer.refused:
                return
            await asyncio.sleep(0.02)
        await deliverer.stop()

    asyncio.run(run())


def test_the_post_goes_to_the_address_that_was_checked(rebinding: list[str]) -> None:
    import ipaddress

    checked, rebound = receivers_on_one_port()
    try:
        deliverer = Deliverer(b"secret", [ipaddress.ip_network("127.0.0.2/32")], attempts=1)
        deliver(deliverer, f"http://rebind.test:{checked.port}/hook")
        assert rebound.received == []
        assert checked.paths() == ["/hook"]
        assert checked.received[0][1]["Host"] == f"rebind.test:{checked.port}"
        assert rebinding == ["127.0.0.2"]  # Resolved once.
    finally:
        checked.close()
        rebound.close()


def make_tls(work: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name` from a CA made here, and a client
    context that trusts that CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)

    subj = ["-nodes", "-newkey", "rsa:2048", "-days", "2"]
    openssl("req", "-x509", *subj, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA")
    openssl("req", *subj, "-keyout", "host.key", "-out", "host.csr", "-subj", f"/CN={name}")
    (work / "san.cnf").write_text(f"subjectAltName=DNS:{name}\n")
    openssl("x509", "-req", "-in", "host.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "host.crt", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(work / "host.crt", work / "host.key")
    return server, ssl.create_default_context(cafile=str(work / "ca.crt"))


@pytest.mark.parametrize("certified", ["rebind.test", "other.test"])
def test_https_to_the_checked_address_still_verifies_the_name(
    rebinding: list[str], tmp_path: Path, certified: str
) -> None:
    import ipaddress

    server_tls, client_tls = make_tls(tmp_path, certified)
    checked, rebound = receivers_on_one_port(server_tls)
    try:
        deliverer = Deliverer(
            b"secret", [ipaddress.ip_network("127.0.0.2/32")], attempts=1, tls=client_tls
        )
        deliver(deliverer, f"https://rebind.test:{checked.port}/hook")
        assert rebound.received == []
        if certified == "rebind.test":
            assert (deliverer.delivered, checked.paths()) == (1, ["/hook"])
        else:  # A certificate for another name is refused, as by any https client.
            assert (deliverer.delivered, checked.paths()) == (0, [])
    finally:
        checked.close()
        rebound.close()
