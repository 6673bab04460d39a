"""An upstream provider that answers image captchas from labels: a real HTTP server in its
own process, for the learning loop's tests and benchmark (docs/learning.md).

It speaks the Anti-Captcha family's createTask / getTaskResult / getBalance / report
methods. An image's answer is the label its bytes were loaded with (by SHA-256); an image
it has no label for is unsolvable. `POST /_labels {"folder": PATH}` loads a labelled folder
(`labels.csv` with file,label and the images beside it or in images/), replacing what it
knew: a site that changes its captcha is a second folder. `GET /_stats` counts the tasks
it answered (what the operator would pay for).

Run: python tests/label_provider.py PORT KEY
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

STATE: dict[str, Any] = {"creates": 0, "answered": 0, "unknown": 0, "reports": 0}
LABELS: dict[str, str] = {}
TASKS: dict[int, str | None] = {}
KEY = ""


def load(folder: Path) -> int:
    """Replace the labels with those of a labelled folder; how many it holds."""
    labels: dict[str, str] = {}
    with (folder / "labels.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            path = folder / "images" / row["file"]
            if not path.is_file():
                path = folder / row["file"]
            labels[hashlib.sha256(path.read_bytes()).hexdigest()] = row["label"]
    LABELS.clear()
    LABELS.update(labels)
    return len(labels)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            status, payload = respond(path, body)
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


def respond(path: str, body: bytes) -> tuple[int, str]:
    request: dict[str, Any] = json.loads(body) if body else {}
    if path == "/_labels":
        return 200, json.dumps({"labels": load(Path(request["folder"]))})
    if path == "/_stats":
        return 200, json.dumps(STATE)
    if request.get("clientKey") != KEY:
        return 200, json.dumps({"errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST"})
    if path == "/createTask":
        STATE["creates"] += 1
        image = base64.b64decode(request["task"].get("body", ""))
        answer = LABELS.get(hashlib.sha256(image).hexdigest())
        task_id = len(TASKS) + 1000
        TASKS[task_id] = answer
        return 200, json.dumps({"errorId": 0, "taskId": task_id})
    if path == "/getTaskResult":
        task_id = request.get("taskId", -1)
        if task_id not in TASKS:
            return 200, json.dumps({"errorId": 16, "errorCode": "ERROR_NO_SUCH_CAPCHA_ID"})
        answer = TASKS[task_id]
        if answer is None:
            STATE["unknown"] += 1
            return 200, json.dumps({"errorId": 12, "errorCode": "ERROR_CAPTCHA_UNSOLVABLE"})
        STATE["answered"] += 1
        return 200, json.dumps({"errorId": 0, "status": "ready", "solution": {"text": answer}})
    if path == "/getBalance":
        return 200, json.dumps({"errorId": 0, "balance": 100.0})
    if path.startswith("/reportIncorrect"):
        STATE["reports"] += 1
        return 200, json.dumps({"errorId": 0, "status": "success"})
    return 404, json.dumps({"errorId": 14, "errorCode": "ERROR_NO_SUCH_METHOD"})


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    KEY = sys.argv[2]
    asyncio.run(main(int(sys.argv[1])))
