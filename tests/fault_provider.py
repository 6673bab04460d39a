"""A fault-injecting upstream provider for tests: a real HTTP server in its own process.

It speaks the Anti-Captcha family's createTask / getTaskResult / getBalance / report methods
and misbehaves on request. `POST /_mode {"mode": ...}` sets what every later call does:

- ok: answer every task ("UPSTREAM" for images, a token otherwise), ready on the first poll;
- wrong: answer images with "WRONG" (a plausible but incorrect answer);
- error: errorId 2, ERROR_NO_SLOT_AVAILABLE on createTask (the provider is broken);
- unsolvable: accept the task, then answer ERROR_CAPTCHA_UNSOLVABLE;
- http500: HTTP 500 with an HTML body;
- hang: never answer createTask;
- drop: close the connection without answering createTask.

`GET /_stats` counts what it received (no key is kept, only whether it was the right one).
Run: python tests/fault_provider.py PORT KEY
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

STATE: dict[str, Any] = {
    "mode": "ok",
    "creates": 0,
    "polls": 0,
    "reports": [],
    "wrong_keys": 0,
    "bodies": 0,
}
TASKS: dict[int, str] = {}
KEY = ""  # The API key it accepts (the command line's second argument).


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            answer = await respond(method, path, body, writer)
            if answer is None:
                return
            status, payload = answer
            data = payload.encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def respond(
    method: str, path: str, body: bytes, writer: asyncio.StreamWriter
) -> tuple[int, str] | None:
    request: dict[str, Any] = json.loads(body) if body else {}
    if path == "/_mode":
        STATE["mode"] = request["mode"]
        return 200, "{}"
    if path == "/_stats":
        return 200, json.dumps(STATE)
    if path == "/_reset":
        STATE.update(mode="ok", creates=0, polls=0, reports=[], wrong_keys=0, bodies=0)
        return 200, "{}"
    if request.get("clientKey") != KEY:
        STATE["wrong_keys"] += 1
        return 200, json.dumps({"errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST"})
    mode = STATE["mode"]
    if path == "/createTask":
        STATE["creates"] += 1
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "drop":
            writer.transport.abort()
            return None
        if mode == "http500":
            return 500, "<html>Internal Server Error</html>"
        if mode == "error":
            return 200, json.dumps(
                {"errorId": 2, "errorCode": "ERROR_NO_SLOT_AVAILABLE", "errorDescription": "x"}
            )
        task = request["task"]
        if "body" in task:
            STATE["bodies"] += 1
        task_id = len(TASKS) + 1000
        TASKS[task_id] = task["type"]
        return 200, json.dumps({"errorId": 0, "taskId": task_id})
    if path == "/getTaskResult":
        STATE["polls"] += 1
        task_type = TASKS.get(request.get("taskId", -1))
        if task_type is None:
            return 200, json.dumps({"errorId": 16, "errorCode": "ERROR_NO_SUCH_CAPCHA_ID"})
        if mode == "unsolvable":
            return 200, json.dumps({"errorId": 12, "errorCode": "ERROR_CAPTCHA_UNSOLVABLE"})
        image = task_type.startswith("ImageToText")
        solution = (
            {"text": "WRONG" if mode == "wrong" else "UPSTREAM"}
            if image
            else {"gRecaptchaResponse": "upstream-token"}
        )
        return 200, json.dumps({"errorId": 0, "status": "ready", "solution": solution})
    if path == "/getBalance":
        return 200, json.dumps({"errorId": 0, "balance": 12.5})
    if path.startswith("/reportIncorrect"):
        STATE["reports"].append(request.get("taskId"))
        return 200, json.dumps({"errorId": 0, "status": "success"})
    return 404, json.dumps({"errorId": 14, "errorCode": "ERROR_NO_SUCH_METHOD"})


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    KEY = sys.argv[2]
    asyncio.run(main(int(sys.argv[1])))
