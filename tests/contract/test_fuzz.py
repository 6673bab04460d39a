"""Schemathesis fuzzes every dialect's OpenAPI document against a running server: no 5xx,
no answer outside the documented shapes, and nothing stored changed by rejected requests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer

pytestmark = pytest.mark.system

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
DIALECTS = ["anticaptcha", "capsolver", "anysolver", "vast", "ucaptcha", "2captcha-legacy"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fuzz_dialect(idle_server: CapgateServer, dialect: str, tmp_path: Path) -> None:
    before = idle_server.db_counts()
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(  # in tmp_path: schemathesis leaves its state in the working dir
        [
            str(st), "run", f"{idle_server.base}/openapi/{dialect}.json",
            "--url", idle_server.base,
            "--checks", CHECKS,
            "--max-examples", "40",
            "--seed", "20261124",
            "--generation-deterministic",
            "--report-dir", str(tmp_path),
        ],
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
            "CAPGATE_FUZZ_KEY": BOOTSTRAP_KEY,
            "PYTHONPATH": str(Path(__file__).parents[2]),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "generated" in done.stdout
    # The fuzzer cannot build a valid captcha image or test-key task by chance: every
    # request it sent was rejected, and none may have changed what is stored.
    assert idle_server.db_counts() == before
