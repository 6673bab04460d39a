"""Callbacks: telling a client's server that its task finished, instead of being polled.

A client names a `callbackUrl` (the JSON dialects) or a `pingback` (2Captcha's legacy API).
Outbound requests go only where the operator allows: the URL's host must be on the
`callback_hosts` allow-list, and every address it resolves to, at every redirect hop, must
be public unless it lies in `callback_allow_networks` (private, loopback, link-local and
metadata ranges are refused otherwise). A name is resolved once per hop and the request
connects to the very address that was checked (the URL's name still goes in the Host header
and, for https, in SNI and the certificate check): a name whose answer changes between the
check and the connection (DNS rebinding) cannot steer the POST elsewhere. A redirect is
followed only on the same host, the one the allow-list let through; environment proxies are
ignored, as a proxy would connect wherever it liked. Each delivery is signed with an HMAC of
its body and retried with backoff; whatever the receiver answers is never read, nor shown
to the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec

from capgate.datafolder import kept_secret
from capgate.model import CapgateError, ErrorCode, Task, TaskStatus, TaskType

log = logging.getLogger("capgate.callbacks")

SIGNATURE_HEADER = "X-Capgate-Signature"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_url(url: str, allowed_hosts: Sequence[str]) -> None:
    """Refuse, at create time, a callback URL the operator does not allow."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CapgateError(ErrorCode.BAD_REQUEST, "callbackUrl must be an http(s) URL")
    if parts.hostname.lower() not in {h.lower() for h in allowed_hosts}:
        raise CapgateError(
            ErrorCode.BAD_REQUEST,
            f"callbackUrl host {parts.hostname!r} is not on this server's allow-list",
        )


def address_allowed(address: str, allowed_networks: Sequence[Network]) -> bool:
    """A public address, or one inside a network the operator explicitly allows."""
    ip = ipaddress.ip_address(address)
    if any(ip in network for network in allowed_networks):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def load_secret(data: Path) -> bytes:
    """The server's signing secret, made on first use and kept in the data directory,
    readable only by its owner from the moment it exists."""
    return kept_secret(data / "callback.key", lambda: secrets.token_hex(32)).encode()


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: sha256=<hex HMAC of the body>."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def payload(task: Task) -> tuple[bytes, str]:
    """The body and content type for a finished task, in the style the client asked for."""
    solution = task.solution
    answer = ""
    if solution is not None:
        answer = (solution.text if task.type is TaskType.IMAGE_TO_TEXT else solution.token) or ""
    if task.params.get("callbackStyle") == "pingback":
        # 2Captcha's pingback: the id and the code, form-encoded.
        code = answer if task.status is TaskStatus.READY else "ERROR_CAPTCHA_UNSOLVABLE"
        form = httpx.QueryParams({"id": str(task.id), "code": code})
        return str(form).encode(), "application/x-www-form-urlencoded"
    if task.status is TaskStatus.READY:
        field = "text" if task.type is TaskType.IMAGE_TO_TEXT else "token"
        body: dict[str, object] = {
            "errorId": 0,
            "taskId": task.id,
            "status": "ready",
            "solution": {field: answer},
        }
    else:
        body = {
            "errorId": 12,
            "taskId": task.id,
            "errorCode": "ERROR_CAPTCHA_UNSOLVABLE",
            "errorDescription": task.error_description or "",
        }
    return msgspec.json.encode(body), "application/json"


class Deliverer:
    """Delivers callbacks in the background, with retries, to allowed addresses only."""

    def __init__(
        self,
        secret: bytes,
        allowed_networks: Sequence[Network],
        attempts: int = 5,
        first_delay: float = 1.0,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.secret = secret
        self.allowed_networks = list(allowed_networks)
        self.attempts = attempts
        self.first_delay = first_delay
        self.timeout = timeout
        # The certificates https receivers are checked against (None: httpx's default).
        self.tls = tls
        self._running: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.refused = 0

    def deliver(self, task: Task) -> None:
        """Start delivering a finished task's callback, if it asked for one."""
        url = task.params.get("callbackUrl")
        if isinstance(url, str) and url:
            job = asyncio.create_task(self._deliver(url, task))
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        """Abandon deliveries still under way."""
        for job in list(self._running):
            job.cancel()

    async def _deliver(self, url: str, task: Task) -> None:
        body, content_type = payload(task)
        headers = {"Content-Type": content_type, SIGNATURE_HEADER: sign(self.secret, body)}
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            try:
                if await self._post(url, body, headers):
                    self.delivered += 1
                    return
            except _Refused as refused:
                self.refused += 1
                log.warning("task %d: callback refused: %s", task.id, refused)
                return
            except (httpx.HTTPError, OSError) as exc:
                log.info("task %d: callback attempt %d failed: %s", task.id, attempt, exc)
            await asyncio.sleep(delay)
            delay *= 2
        log.warning("task %d: callback not delivered after %d attempts", task.id, self.attempts)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """POST, following up to 3 redirects on the same host, each hop's addresses
        checked first and then connected to."""
        host = _hostname(url)
        async with httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
            verify=self.tls or True,
        ) as http:
            for _ in range(4):
                status, location = await self._post_checked(http, url, body, headers)
                if status in _REDIRECTS and location is not None:
                    url = urljoin(url, location)
                    if _hostname(url) != host:
                        raise _Refused(f"a redirect to another host: {url}")
                    continue
                return 200 <= status < 300
        raise _Refused("too many redirects")

    async def _post_checked(
        self, http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        """POST to the addresses the URL's host resolves to, checked, one after the other
        until one connects; the status and any Location header."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise _Refused(f"not a valid URL: {url}") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise _Refused(f"not an http(s) URL: {url}")
        name = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        sent = {**headers, "Host": target.netloc.decode("ascii")}
        failure: Exception = _Refused(f"{name} resolves to no address")
        for address in await self._checked_addresses(name, port):
            try:
                async with http.stream(
                    "POST",
                    target.copy_with(host=address),
                    content=body,
                    headers=sent,
                    extensions={"sni_hostname": name},
                ) as response:
                    return response.status_code, response.headers.get("location")
            except httpx.ConnectError as exc:
                failure = exc
        raise failure

    async def _checked_addresses(self, name: str, port: int) -> list[str]:
        """Every address `name` resolves to, once; refused unless all are allowed."""
        infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            if not address_allowed(address, self.allowed_networks):
                raise _Refused(f"{name} resolves to {address}, which is not allowed")
        return addresses


def _hostname(url: str) -> str | None:
    """The URL's host, lower case; None if it has none or cannot be parsed."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


class _Refused(Exception):
    """A callback the operator's rules forbid: never sent, never retried."""
