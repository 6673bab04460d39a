"""The model registry's worker routes (/worker/models, /worker/model): worker keys only,
and junk asks for nothing big."""

from __future__ import annotations

from tests.support import BOOTSTRAP_KEY, CapgateServer, run_cli


def test_only_worker_keys_see_the_registry_and_junk_is_refused(idle_server: CapgateServer) -> None:
    done = run_cli("keys", "create", "--worker", "--data", str(idle_server.data))
    worker = done.stdout.strip()
    for path, body in (
        ("/worker/models", {}),
        ("/worker/model", {"site": "*", "version": 1}),
    ):
        refused = idle_server.http.post(path, json={"workerKey": BOOTSTRAP_KEY, **body})
        assert refused.status_code == 401, refused.text
    for junk in (
        {"site": "a" * 100_000, "version": 1},
        {"site": "*", "version": 10**30},
        {"site": "*", "version": 1, "extra": 1},
        {"site": ["*"], "version": 1},
    ):
        answer = idle_server.http.post("/worker/model", json={"workerKey": worker, **junk})
        assert answer.status_code == 400 and len(answer.content) < 2000, answer.text
