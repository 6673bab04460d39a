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

_TASK_REQUEST: Schema = {
    "type": "object",
    "required": ["clientKey", "taskId"],
    "properties": {"clientKey": {"type": "string"}, "taskId": _TASK_ID},
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
    for name in (
        "reportIncorrectImageCaptcha",
        "reportIncorrectRecaptcha",
        "reportIncorrectHcaptcha",
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


DOCUMENTS: dict[str, Schema] = {
    "anticaptcha": anticaptcha_family(),
}
