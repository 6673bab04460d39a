"""2Captcha's legacy API: /in.php and /res.php, form or multipart in, plain text or JSON out.

`2captcha-python` speaks only this API and never asks for JSON; other clients send `json=1`.
Every answer, errors included, is HTTP 200, as the vendor does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from capgate.api.http import JSON, TEXT, Request, Response
from capgate.api.routing import Handler, Route, Routes, guarded
from capgate.dialects import twocaptcha_legacy as legacy
from capgate.metrics import Metrics
from capgate.model import CapgateError, Task
from capgate.service import Service

log = logging.getLogger("capgate.api")


def mount_twocaptcha_legacy(routes: Routes, service: Service) -> None:
    """Serve /in.php and /res.php."""

    async def in_php(request: Request, form: legacy.Form) -> Response:
        secret, spec, as_json = legacy.parse_in(form)
        key = await service.authenticate(secret, request.client_ip)
        task = await service.create_task(
            key, spec, request.client_ip, idempotency_key=request.idempotency_key
        )
        return _answer(legacy.render_in(task, as_json), as_json)

    async def res_php(request: Request, form: legacy.Form) -> Response:
        res = legacy.parse_res(form)
        key = await service.authenticate(res.key, request.client_ip)
        if res.action == "getbalance":
            return _answer(
                legacy.render_balance(await service.balance(key), res.as_json), res.as_json
            )
        if res.action in ("reportbad", "reportgood"):
            await service.report(key, res.task_ids[0], res.action == "reportgood")
            return _answer(legacy.render_reported(res.as_json), res.as_json)
        with_price = res.action == "get2"
        if not res.many:
            task = await service.get_result(key, res.task_ids[0])
            return _answer(legacy.render_res_task(task, res.as_json, with_price), res.as_json)
        tasks: list[Task | None] = []
        for task_id in res.task_ids:
            try:
                tasks.append(await service.get_result(key, task_id))
            except CapgateError:
                tasks.append(None)
        return _answer(legacy.render_res_many(tasks, res.as_json), res.as_json)

    for path, serve in (("/in.php", in_php), ("/res.php", res_php)):
        routes.add(path, Route(_parsed_once(serve, service.metrics), _plain_error))


class _Shape:
    """Whether one request's answer is JSON, and carries a CORS header, as far as its
    form has been read."""

    as_json = False
    # header_acao=1: `Access-Control-Allow-Origin: *`, so a browser page may read the answer
    # (2Captcha documents it; both npm clients send it by default). Keys travel in the
    # request, not in cookies, so the header shares nothing a page could not ask for itself.
    cors = False


def _parsed_once(
    serve: Callable[[Request, legacy.Form], Awaitable[Response]], metrics: Metrics
) -> Handler:
    """Read the form once, then serve it; an error is answered in the shape the form
    asked for (the query's alone when the body cannot be read), never by reading it
    again."""

    async def handler(request: Request) -> Response:
        shape = _Shape()

        async def parse_and_serve(request: Request) -> Response:
            # The query first: its json=1 shapes the answer to a body that cannot be read.
            form = legacy.parse_query(request.query)
            shape.as_json = legacy.wants_json(form)
            shape.cors = legacy.wants_cors(form)
            form = legacy.add_body(form, request.header(b"content-type"), request.body)
            shape.as_json = legacy.wants_json(form)
            shape.cors = legacy.wants_cors(form)
            return await serve(request, form)

        def render(request: Request, error: CapgateError) -> Response:
            return _error(error, shape.as_json)

        safe = guarded(parse_and_serve, render, label="2captcha-legacy", metrics=metrics)
        response = await safe(request)
        if shape.cors:
            response.headers = [*response.headers, (b"access-control-allow-origin", b"*")]
        return response

    return handler


def _answer(body: bytes, as_json: bool) -> Response:
    return Response(body, content_type=JSON if as_json else TEXT)


def _error(error: CapgateError, as_json: bool) -> Response:
    return _answer(legacy.render_error(error, as_json), as_json)


def _plain_error(error: CapgateError) -> Response:
    return _error(error, False)
