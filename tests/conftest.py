"""Fixtures that start real capgate processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import CapgateServer, ServerFactory, free_port, wait_for_redis


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers on demand (same data directory unless told otherwise); stop them all."""
    servers: list[CapgateServer] = []

    def start(data: Path | None = None, *args: str, **settings: str) -> CapgateServer:
        server = CapgateServer(data or tmp_path / "data", *args, **settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def idle_server(start_server: ServerFactory, tmp_path: Path) -> CapgateServer:
    """A server that accepts tasks but solves nothing (an API-only node).

    It has a store of its own: a solving server on the same store would solve its tasks.
    """
    return start_server(tmp_path / "idle-data", local_solving="false")


@pytest.fixture
def server(start_server: ServerFactory) -> CapgateServer:
    """A server with the local OCR solver and the test-key solver running."""
    return start_server()


@pytest.fixture
def capsolver_sdk(server: CapgateServer) -> Iterator[Any]:
    """The capsolver SDK pointed at `server` (it concatenates api_base with the path, so
    capgate's own prefix works as is), put back afterwards."""
    import capsolver

    from tests.support import BOOTSTRAP_KEY

    saved = capsolver.api_base, capsolver.api_key
    capsolver.api_base = f"{server.base}/capsolver"
    capsolver.api_key = BOOTSTRAP_KEY
    yield capsolver
    capsolver.api_base, capsolver.api_key = saved
    # The SDK keeps one requests session per thread and never closes it.
    from capsolver import api_requestor

    session = getattr(api_requestor._thread_context, "session", None)
    if session is not None:
        session.close()
        del api_requestor._thread_context.session


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on 127.0.0.1 for the session; its base URL (no database).

    Skipped where Redis is not installed, except in CI (CI=true), where its absence fails.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI must test the Redis store")
        pytest.skip("redis-server is not installed")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_redis(f"redis://127.0.0.1:{port}")
    yield f"redis://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def tls_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server that speaks only TLS, with a certificate from a CA made here; a
    rediss:// URL that trusts that CA. Needs redis-server and openssl (both in CI)."""
    needed = {name: shutil.which(name) for name in ("redis-server", "openssl")}
    missing = [name for name, path in needed.items() if path is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} not installed, and CI must test Redis over TLS")
        pytest.skip(f"{', '.join(missing)} not installed")
    work = tmp_path_factory.mktemp("redis-tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)

    subj = ["-nodes", "-newkey", "rsa:2048", "-days", "2"]
    openssl("req", "-x509", *subj, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA")
    openssl("req", *subj, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (work / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2",
            "-extfile", "san.cnf")  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [str(needed["redis-server"]), "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--tls-cert-file", "server.crt", "--tls-key-file",
         "server.key", "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(work)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={work / 'ca.crt'}"
    wait_for_redis(url)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """An empty Redis database for one test."""
    import redis

    client = redis.Redis.from_url(f"{redis_server}/0")
    client.flushdb()
    client.close()
    return f"{redis_server}/0"


@pytest.fixture
def start_worker() -> Iterator[Any]:
    """Start `capgate worker` processes on demand; SIGKILL them all at the end."""
    workers: list[subprocess.Popen[bytes]] = []

    def start(server: CapgateServer, key: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "capgate", "worker", "--server", server.base, "--key", key],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers.append(process)
        return process

    yield start
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def anticaptcha_sdk(server: CapgateServer) -> Iterator[None]:
    """Point anticaptchaofficial at capgate.

    Its host is fixed inside the package (CLIENTS.md): the least intrusive redirect is to
    swap the module-level requests session for one that rewrites that host.
    """
    from anticaptchaofficial import antinetworking

    from tests.support import RewritingSession

    original = antinetworking.session
    session = RewritingSession("https://api.anti-captcha.com", server.base)
    session.headers.update(original.headers)
    antinetworking.session = session
    yield
    antinetworking.session = original
    session.close()
