"""uCaptcha's REST routes: POST /task/submit and GET /task/result/:id.

Unlike the JSON family, this dialect answers with real HTTP status codes, as its vendor
documents; the key comes in the `x-api-key` header or `?token=`.
"""

from __future__ import annotations

import logging
import math
from contextvars import ContextVar
from urllib.parse import parse_qsl

from capgate.api.http import Request, Response
from capgate.api.routing import Handler, Route, Routes, guarded
from capgate.dialects import ucaptcha
from capgate.model import CapgateError, ErrorCode, Key
from capgate.service import Service

log = logging.getLogger("capgate.api")

RESULT_PREFIX = "/task/result/"

# The key the current request authenticated as, so an error answer (a 429 above all) can
# carry the key's rate-limit headers too. Set anew by every handler.
_rate_key: ContextVar[Key | None] = ContextVar("capgate_rest_rate_key", default=None)


def mount_ucaptcha(routes: Routes, service: Service, max_wait: float) -> None:
    """Serve uCaptcha's REST routes."""

    async def authenticate(request: Request) -> Key:
        _rate_key.set(None)
        key = await service.authenticate(
            ucaptcha.client_key(request.headers, request.query), request.client_ip
        )
        _rate_key.set(key)
        return key

    async def submit(request: Request) -> Response:
        _rate_key.set(None)
        if request.method != "POST":
            raise CapgateError(ErrorCode.NO_SUCH_METHOD, "Use POST for /task/submit")
        key = await authenticate(request)
        spec = ucaptcha.parse_submit(request.body)
        task = await service.create_task(
            key, spec, request.client_ip, idempotency_key=request.idempotency_key
        )
        return limited(_response(*ucaptcha.render_submitted(task)), key)

    async def result(request: Request) -> Response:
        _rate_key.set(None)
        if request.method != "GET":
            raise CapgateError(ErrorCode.NO_SUCH_METHOD, "Use GET for /task/result/:id")
        key = await authenticate(request)
        task_id = ucaptcha.parse_task_id(request.path.removeprefix(RESULT_PREFIX))
        task = await service.get_result(key, task_id)
        wait = _wait_seconds(request.query)
        if wait > 0:
            task = await service.wait_until_final(task, min(wait, max_wait))
        return limited(_response(*ucaptcha.render_result(task)), key)

    def limited(response: Response, key: Key | None) -> Response:
        """The response with the key's create-rate headers, as uCaptcha documents them
        (ucaptcha.net/docs/api/overview), when a per-key rate is configured."""
        bucket = None if key is None else service.rate_limiter.peek(key.id)
        if bucket is None:
            return response
        limit, remaining, seconds_to_full = bucket
        reset = math.ceil(service.clock.now() + seconds_to_full)  # a Unix time, as documented
        response.headers = [
            *response.headers,
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        return response

    def render(request: Request, error: CapgateError) -> Response:
        return limited(_on_error(error), _rate_key.get())

    def safe(handler: Handler) -> Handler:
        return guarded(handler, render, label="ucaptcha", metrics=service.metrics)

    routes.add("/task/submit", Route(safe(submit), _on_error))
    routes.add_prefix(RESULT_PREFIX, Route(safe(result), _on_error))


def _wait_seconds(query: bytes) -> float:
    """The opt-in long-poll: `?wait=N` answers as soon as the task finishes."""
    for name, value in parse_qsl(query.decode("latin-1")):
        if name == "wait":
            try:
                seconds = float(value)
            except ValueError:
                return 0.0
            return seconds if 0 < seconds < float("inf") else 0.0
    return 0.0


def _response(status: int, body: bytes) -> Response:
    return Response(body, status=status)


def _on_error(error: CapgateError) -> Response:
    return _response(*ucaptcha.render_error(error))
