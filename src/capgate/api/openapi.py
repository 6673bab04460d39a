"""OpenAPI documents, one per dialect, describing exactly what each accepts and answers.

Served at /openapi/<dialect>.json. Answers are described with closed objects
(additionalProperties: false), because the root's clients crash on unexpected keys; the
fuzz tests hold capgate to these documents.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_ERROR: Schema = {
    "type": "object",
    "required": ["errorId", "errorCode", "errorDescription"],
    "properties": {
        "errorId": {"type": "integer", "minimum": 1},
        "errorCode": {"type": "string", "pattern": "^ERROR_"},
        "errorDescription": {"type": "string"},
    },
    "additionalProperties": False,
}

_TASK_ID = {
    "oneOf": [
        {"type": "integer"},
        {"type": "string", "pattern": "^[0-9]+$"},
    ]
}

_CREATE_REQUEST: Schema = {
    "type": "object",
    "required": ["clientKey", "task"],
    "properties": {
        "clientKey": {"type": "string"},
        "task": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string"},
                "body": {"type": "string", "description": "base64 image (ImageToTextTask)"},
                "websiteURL": {"type": "string"},
                "websiteKey": {"type": "string"},
                "phrase": {"type": "boolean"},
                "case": {"type": "boolean"},
                "numeric": {"type": "integer"},
                "math": {"type": "boolean"},
                "minLength": {"type": "integer"},
                "maxLength": {"type": "integer"},
                "comment": {"type": "string"},
            },
        },
        "softId": {"type": ["integer", "string"]},
        "languagePool": {"type": "string"},
        "callbackUrl": {"type": "string"},
        "idempotencyKey": {"type": "string", "maxLength": 255},
    },
}

_CREATED: Schema = {
    "type": "object",
    "required": ["errorId", "taskId"],
    "properties": {"errorId": {"const": 0}, "taskId": {"type": "integer"}},
    "additionalProperties": False,
}

_SOLUTION: Schema = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "gRecaptchaResponse": {"type": "string"},
        "token": {"type": "string"},
        "respKey": {"type": "string"},
        "userAgent": {"type": "string"},
    },
    "additionalProperties": False,
}

_PROCESSING: Schema = {
    "type": "object",
    "required": ["errorId", "status"],
    "properties": {"errorId": {"const": 0}, "status": {"const": "processing"}},
    "additionalProperties": False,
}

_READY: Schema = {
    "type": "object",
    "required": [
        "errorId",
        "status",
        "solution",
        "cost",
        "ip",
        "createTime",
        "endTime",
        "solveCount",
    ],
    "properties": {
        "errorId": {"const": 0},
        "status": {"const": "ready"},
        "solution": _SOLUTION,
        "cost": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{5}$"},
        "ip": {"type": "string"},
        "createTime": {"type": "integer"},
        "endTime": {"type": "integer"},
        "solveCount": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}

_KEY_ONLY: Schema = {
    "type": "object",
    "required": ["clientKey"],
    "properties": {"clientKey": {"type": "string"}},
}

_WAIT = {"type": "number", "description": "opt-in long-poll: answer once done, up to N s"}
_TASK_REQUEST: Schema = {
    "type": "object",
    "required": ["clientKey", "taskId"],
    "properties": {"clientKey": {"type": "string"}, "taskId": _TASK_ID, "waitSeconds": _WAIT},
}

_BALANCE: Schema = {
    "type": "object",
    "required": ["errorId", "balance"],
    "properties": {"errorId": {"const": 0}, "balance": {"type": "number"}},
    "additionalProperties": False,
}

_REPORTED: Schema = {
    "type": "object",
    "required": ["errorId", "status"],
    "properties": {"errorId": {"const": 0}, "status": {"const": "success"}},
    "additionalProperties": False,
}


def _operation(summary: str, request: Schema, answers: list[Schema]) -> Schema:
    body = {"oneOf": answers} if len(answers) > 1 else answers[0]
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": {
                    "description": "The answer, or an error in the dialect's shape (HTTP 200).",
                    "content": {"application/json": {"schema": body}},
                },
            },
        }
    }


def anticaptcha_family(prefix: str = "") -> Schema:
    """The Anti-Captcha family (Anti-Captcha, 2Captcha API v2, CapMonster Cloud)."""
    paths: Schema = {
        f"{prefix}/createTask": _operation("Create a task", _CREATE_REQUEST, [_CREATED, _ERROR]),
        f"{prefix}/getTaskResult": _operation(
            "Read a task's status and answer", _TASK_REQUEST, [_PROCESSING, _READY, _ERROR]
        ),
        f"{prefix}/getBalance": _operation("Read the key's balance", _KEY_ONLY, [_BALANCE, _ERROR]),
    }
    paths[f"{prefix}/getQueueStats"] = _operation(
        "How a queue stands: free solvers, load, price, speed (no key needed)",
        _obj(["queueId"], {"queueId": {"type": "integer"}}, False),
        [
            _obj(
                ["errorId", "waiting", "load", "bid", "speed", "total"],
                {
                    "errorId": {"const": 0},
                    "waiting": {"type": "integer"},
                    "load": {"type": "number"},
                    "bid": {"type": "string"},
                    "speed": {"type": "number"},
                    "total": {"type": "integer"},
                },
            ),
            _ERROR,
        ],
    )
    record = _obj(
        ["dateFrom", "dateTill", "volume", "money"],
        {
            "dateFrom": {"type": "integer"},
            "dateTill": {"type": "integer"},
            "volume": {"type": "integer"},
            "money": {"type": "number"},
        },
    )
    paths[f"{prefix}/getSpendingStats"] = _operation(
        "The key's spending, hour by hour",
        _obj(["clientKey"], {"clientKey": {"type": "string"}}, False),
        [
            _obj(
                ["errorId", "data"],
                {"errorId": {"const": 0}, "data": {"type": "array", "items": record}},
            ),
            _ERROR,
        ],
    )
    for name in (
        "reportIncorrectImageCaptcha",
        "reportIncorrectRecaptcha",
        "reportIncorrectHcaptcha",
        "reportIncorrectTokenCaptcha",
        "reportCorrectRecaptcha",
        "reportIncorrect",
        "reportCorrect",
    ):
        paths[f"{prefix}/{name}"] = _operation(
            "Report on a solved task's answer", _TASK_REQUEST, [_REPORTED, _ERROR]
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "capgate: Anti-Captcha family dialect",
            "version": "1",
            "description": "createTask / getTaskResult as Anti-Captcha, 2Captcha API v2 and "
            "CapMonster Cloud clients speak it. Errors are answered on HTTP 200.",
        },
        "paths": paths,
    }


def _obj(required: list[str], properties: Schema, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "required": required, "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _document(title: str, description: str, paths: Schema) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": f"capgate: {title}", "version": "1", "description": description},
        "paths": paths,
    }


_STRING_ID = {"type": "string"}
_ANY_ID = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
_ID_REQUEST = _obj(
    ["clientKey", "taskId"],
    {"clientKey": {"type": "string"}, "taskId": _ANY_ID, "waitSeconds": _WAIT},
    False,
)


def capsolver() -> Schema:
    """CapSolver's dialect under /capsolver."""
    error = _obj(
        ["errorId", "errorCode", "errorDescription"],
        {
            "errorId": {"const": 1},
            "errorCode": {"type": "string", "pattern": "^ERROR_"},
            "errorDescription": {"type": "string"},
            "taskId": _STRING_ID,
        },
    )
    task = _obj(
        ["errorId", "errorCode", "errorDescription", "taskId", "status"],
        {
            "errorId": {"const": 0},
            "errorCode": {"const": ""},
            "errorDescription": {"const": ""},
            "taskId": _STRING_ID,
            "status": {"enum": ["idle", "processing", "ready"]},
            # CapSolver's Turnstile answers name their type; several images, `answers`.
            "solution": {
                **_SOLUTION,
                "properties": {
                    **_SOLUTION["properties"],
                    "type": {"type": "string"},
                    "answers": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    )
    balance = _obj(
        ["errorId", "balance", "packages"],
        {"errorId": {"const": 0}, "balance": {"type": "number"}, "packages": {"type": "array"}},
    )
    feedback_request = _obj(
        ["clientKey", "taskId", "result"],
        {
            "clientKey": {"type": "string"},
            "taskId": _ANY_ID,
            "result": _obj(["invalid"], {"invalid": {"type": "boolean"}}, False),
        },
        False,
    )
    feedback = _obj(
        ["errorId", "errorCode", "errorDescription", "message"],
        {
            "errorId": {"const": 0},
            "errorCode": {"const": ""},
            "errorDescription": {"const": ""},
            "message": {"type": "string"},
        },
    )
    p = "/capsolver"
    return _document(
        "CapSolver dialect",
        "CapSolver's createTask / getTaskResult: string ids, idle / processing / ready, "
        "errorId 1 with string codes, image tasks answered inside createTask.",
        {
            f"{p}/createTask": _operation("Create a task", _CREATE_REQUEST, [task, error]),
            f"{p}/getTaskResult": _operation("Read a task", _ID_REQUEST, [task, error]),
            f"{p}/getBalance": _operation("Read the balance", _KEY_ONLY, [balance, error]),
            f"{p}/feedbackTask": _operation(
                "Report on an answer", feedback_request, [feedback, error]
            ),
        },
    )


def anysolver() -> Schema:
    """AnySolver's dialect under /anysolver."""
    error = _obj(
        ["errorId", "errorCode", "errorDescription"],
        {
            "errorId": {"enum": [1, 2]},
            "errorCode": {"type": "string", "pattern": "^(?!ERROR_)[A-Z_]+$"},
            "errorDescription": {"type": "string"},
        },
    )
    task = _obj(
        ["status", "taskId", "errorId", "taskType", "provider", "solution"],
        {
            "status": {"enum": ["processing", "ready", "failed"]},
            "taskId": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
            "errorId": {"enum": [0, 1, 2]},
            "errorCode": {"type": "string"},
            "errorDescription": {"type": "string"},
            "cost": {"type": "number"},
            "taskType": {"type": "string"},
            "provider": {"type": "string"},
            "solution": {"oneOf": [{"type": "null"}, _SOLUTION]},
        },
    )
    balance = _obj(["errorId", "balance"], {"errorId": {"const": 0}, "balance": {"type": "number"}})
    created = _obj(
        ["errorId", "taskId"],
        {
            "errorId": {"const": 0},
            "taskId": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
        },
    )
    p = "/anysolver"
    return _document(
        "AnySolver dialect",
        "AnySolver's API: ULID ids, processing / ready / failed, errorId 0/1/2, codes "
        "without the ERROR_ prefix, cost as a number, taskType and provider in every answer.",
        {
            f"{p}/createTask": _operation("Create a task", _CREATE_REQUEST, [created, error]),
            f"{p}/getTaskResult": _operation("Read a task", _ID_REQUEST, [task, error]),
            f"{p}/getBalance": _operation("Read the balance", _KEY_ONLY, [balance, error]),
        },
    )


def vast() -> Schema:
    """Vast's dialect under /api/solver."""
    fields = {
        "errorId": {"const": 1},
        "errorCode": {"type": "string", "pattern": "^ERROR_"},
        "errorDescription": {"type": "string"},
    }
    nested = _obj(["errorId", "errorCode", "errorDescription"], fields)
    # Every error carries the status word too (seed 003), so a polling client stops.
    error = _obj(
        ["errorId", "errorCode", "errorDescription", "status", "error"],
        {**fields, "status": {"const": "failed"}, "error": nested},
    )
    solution = _obj(
        [],
        {
            "text": {"type": "string"},
            "gRecaptchaResponse": {"type": "string"},
            "token": {"type": "string"},
            "score": {"type": "number"},
            "userAgent": {"type": "string"},
        },
    )
    processing = _obj(
        ["errorId", "status"], {"errorId": {"const": 0}, "status": {"const": "processing"}}
    )
    ready = _obj(
        ["errorId", "status", "solution"],
        {"errorId": {"const": 0}, "status": {"const": "ready"}, "solution": solution},
    )
    created = _obj(["errorId", "taskId"], {"errorId": {"const": 0}, "taskId": _STRING_ID})
    balance = _obj(["errorId", "balance"], {"errorId": {"const": 0}, "balance": {"type": "number"}})
    p = "/api/solver"
    return _document(
        "Vast dialect",
        "Vast's solver API: processing / ready / failed with the nested error object.",
        {
            f"{p}/createTask": _operation("Create a task", _CREATE_REQUEST, [created, error]),
            f"{p}/getTaskResult": _operation(
                "Read a task", _ID_REQUEST, [processing, ready, error]
            ),
            f"{p}/getBalance": _operation("Read the balance", _KEY_ONLY, [balance, error]),
            f"{p}/reportIncorrect": _operation(
                "Report a wrong answer", _ID_REQUEST, [_REPORTED, error]
            ),
            f"{p}/reportCorrect": _operation(
                "Report a right answer", _ID_REQUEST, [_REPORTED, error]
            ),
        },
    )


def ucaptcha() -> Schema:
    """uCaptcha's REST routes."""
    error = _obj(
        ["status", "error", "code"],
        {"status": {"const": "FAILED"}, "error": {"type": "string"}, "code": {"type": "string"}},
    )
    not_found = _obj(["status"], {"status": {"const": "NOT_FOUND"}})
    result = _obj(
        ["status"],
        {
            "status": {"enum": ["QUEUED", "RUNNING", "SUCCESS", "FAILED"]},
            "result": _obj(
                ["token"],
                {
                    "token": {"type": "string"},
                    "text": {"type": "string"},
                    "userAgent": {"type": "string"},
                },
            ),
            "error": {"type": "string"},
        },
    )
    submitted = _obj(
        ["task_id", "status"],
        {"task_id": _STRING_ID, "status": {"enum": ["QUEUED", "RUNNING", "SUCCESS", "FAILED"]}},
    )

    def answers(ok: Schema, statuses: list[int]) -> Schema:
        out: Schema = {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}}
        }
        for status in statuses:
            schema = {"oneOf": [error, not_found]} if status == 404 else error
            out[str(status)] = {
                "description": "An error, with the vendor's HTTP status.",
                "content": {"application/json": {"schema": schema}},
            }
        return out

    key = [
        {"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"}},
        {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
    ]
    task = _obj(
        ["type"],
        {
            "type": {"type": "string"},
            "sitekey": {"type": "string"},
            "url": {"type": "string"},
            "body": {"type": "string"},
        },
        False,
    )
    return _document(
        "uCaptcha REST dialect",
        "POST /task/submit and GET /task/result/{id}; real HTTP status codes.",
        {
            "/task/submit": {
                "post": {
                    "summary": "Submit a task",
                    "parameters": key,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": task}},
                    },
                    "responses": answers(submitted, [400, 401, 402, 413, 503]),
                }
            },
            "/task/result/{task_id}": {
                "get": {
                    "summary": "Poll a task",
                    "parameters": [
                        {
                            "name": "task_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1},
                        },
                        *key,
                        {"name": "wait", "in": "query", "required": False, "schema": _WAIT},
                    ],
                    "responses": answers(result, [401, 404, 429, 503]),
                }
            },
        },
    )


def twocaptcha_legacy() -> Schema:
    """2Captcha's legacy /in.php and /res.php."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    envelope = _obj(
        ["status", "request"],
        {
            "status": {"enum": [0, 1]},
            "request": {"type": "string"},
            "price": {"type": "string"},
            "error_text": {"type": "string"},
            "useragent": {"type": "string"},
        },
    )
    answers = {
        "200": {
            "description": "Plain text, or JSON with json=1; errors too are HTTP 200.",
            "content": {**text, "application/json": {"schema": envelope}},
        }
    }
    params = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("key", "action", "id", "ids", "json")
    ]
    form = _obj(
        [],
        {
            name: {"type": "string"}
            for name in ("key", "method", "body", "googlekey", "sitekey", "pageurl", "json")
        },
        False,
    )
    return _document(
        "2Captcha legacy dialect",
        "in.php / res.php: form or multipart in, plain text or JSON out.",
        {
            "/in.php": {
                "post": {
                    "summary": "Submit a captcha",
                    "requestBody": {
                        "content": {"application/x-www-form-urlencoded": {"schema": form}}
                    },
                    "responses": answers,
                }
            },
            "/res.php": {
                "get": {
                    "summary": "Results, balance, reports",
                    "parameters": params,
                    "responses": answers,
                }
            },
        },
    )


DOCUMENTS: dict[str, Schema] = {
    "anticaptcha": anticaptcha_family(),
    "capsolver": capsolver(),
    "anysolver": anysolver(),
    "vast": vast(),
    "ucaptcha": ucaptcha(),
    "2captcha-legacy": twocaptcha_legacy(),
}
