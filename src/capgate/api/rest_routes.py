"""uCaptcha's REST routes: POST /task/submit and GET /task/result/:id.

Unlike the JSON family, this dialect answers with real HTTP status codes, as its vendor
documents; the key comes in the `x-api-key` header or `?token=`.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from capgate.api.http import Request, Response
from capgate.api.routing import Handler, Route, Routes, guarded
from capgate.dialects import ucaptcha
from capgate.model import CapgateError, ErrorCode
from capgate.service import Service

log = logging.getLogger("capgate.api")

RESULT_PREFIX = "/task/result/"


def mount_ucaptcha(routes: Routes, service: Service, max_wait: float) -> None:
    """Serve uCaptcha's REST routes."""

    async def submit(request: Request) -> Response:
        if request.method != "POST":
            raise CapgateError(ErrorCode.NO_SUCH_METHOD, "Use POST for /task/submit")
        key = await service.authenticate(ucaptcha.client_key(request.headers, request.query))
        spec = ucaptcha.parse_submit(request.body)
        task = await service.create_task(
            key, spec, request.client_ip, idempotency_key=request.idempotency_key
        )
        return _response(*ucaptcha.render_submitted(task))

    async def result(request: Request) -> Response:
        if request.method != "GET":
            raise CapgateError(ErrorCode.NO_SUCH_METHOD, "Use GET for /task/result/:id")
        key = await service.authenticate(ucaptcha.client_key(request.headers, request.query))
        task_id = ucaptcha.parse_task_id(request.path.removeprefix(RESULT_PREFIX))
        task = await service.get_result(key, task_id)
        wait = _wait_seconds(request.query)
        if wait > 0:
            task = await service.wait_until_final(task, min(wait, max_wait))
        return _response(*ucaptcha.render_result(task))

    def render(request: Request, error: CapgateError) -> Response:
        return _on_error(error)

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
