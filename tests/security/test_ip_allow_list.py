"""A key may be restricted to the networks it is used from (`keys create --allow-ip`):
elsewhere every route refuses it in its dialect's words and stores nothing. The server
sees the connection's address, or behind a proxy on 127.0.0.1 its X-Forwarded-For."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CapgateServer, captchas, image_task, run_cli

pytestmark = pytest.mark.system


def new_key(server: CapgateServer, *args: str) -> str:
    done = run_cli("keys", "create", "--balance", "1", *args, "--data", str(server.data))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_key_works_only_from_its_networks(idle_server: CapgateServer) -> None:
    key = new_key(idle_server, "--allow-ip", "10.0.0.0/8", "--allow-ip", "2001:db8::/32")
    body, _ = captchas(6161, 1)[0]
    create = {"clientKey": key, "task": image_task(body)}
    before = idle_server.db_counts()
    refused = idle_server.post("/createTask", create)
    assert (refused["errorId"], refused["errorCode"]) == (21, "ERROR_IP_BLOCKED"), refused
    assert "127.0.0.1" in refused["errorDescription"]
    legacy = idle_server.http.post("/in.php", data={"key": key, "method": "base64", "body": body})
    assert legacy.text == "ERROR_IP_NOT_ALLOWED"
    rest = idle_server.http.post("/task/submit", json=image_task(body), headers={"x-api-key": key})
    assert rest.status_code == 403 and rest.json()["code"] == "ERROR_IP_NOT_ALLOWED"
    capsolver = idle_server.post("/capsolver/getBalance", {"clientKey": key})
    assert capsolver["errorCode"] == "ERROR_KEY_DENIED_ACCESS"
    assert idle_server.db_counts() == before
    # From inside its network (through a proxy on 127.0.0.1 that names the client).
    for client in ("10.1.2.3", "2001:db8::7"):
        inside = idle_server.http.post(
            "/createTask", json=create, headers={"X-Forwarded-For": client}
        ).json()
        assert inside["errorId"] == 0, (client, inside)
    outside = idle_server.http.post(
        "/getBalance", json={"clientKey": key}, headers={"X-Forwarded-For": "192.0.2.1"}
    ).json()
    assert outside["errorCode"] == "ERROR_IP_BLOCKED"
    # The listing shows the networks (never the secret).
    listed = run_cli("keys", "list", "--data", str(idle_server.data))
    assert "10.0.0.0/8, 2001:db8::/32" in listed.stdout and key not in listed.stdout


def test_worker_keys_are_restricted_too(idle_server: CapgateServer) -> None:
    worker = new_key(idle_server, "--worker", "--allow-ip", "10.0.0.0/8")
    ask = {"workerKey": worker, "types": ["ImageToText"]}
    refused = idle_server.http.post("/worker/lease", json=ask)
    assert refused.status_code == 403 and refused.json()["error"] == "IP_NOT_ALLOWED"
    allowed = idle_server.http.post(
        "/worker/lease", json=ask, headers={"X-Forwarded-For": "10.9.9.9"}
    )
    assert allowed.status_code == 200 and allowed.json() == {"leases": []}


def test_a_key_without_networks_works_from_anywhere(idle_server: CapgateServer) -> None:
    key = new_key(idle_server)
    answer = idle_server.post("/getBalance", {"clientKey": key})
    assert answer["errorId"] == 0


def test_a_bad_network_is_refused_at_creation(tmp_path: Path) -> None:
    done = run_cli("keys", "create", "--allow-ip", "10.0.0.0/33", "--data", str(tmp_path / "d"))
    assert done.returncode != 0
    assert "--allow-ip '10.0.0.0/33' is not an address or a network" in done.stderr
    assert "Traceback" not in done.stderr
