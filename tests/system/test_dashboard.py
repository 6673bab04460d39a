"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver): log in,
see a task appear after a createTask, see a provider's health change; and the operator
commands that read the same overview. Skips without Chromium, except under CI=true."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, run_cli

pytestmark = pytest.mark.system

ADMIN = "dashboard-admin-key-for-tests"


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI needs Debian's chromium and chromium-driver (scripts/test installs them)"
            )
        pytest.skip("chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def eventually(check: Callable[[], bool], seconds: float = 20) -> None:
    """Wait until the (self-refreshing) page shows what `check` looks for."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (NoSuchElementException, StaleElementReferenceException):
            pass  # The page reloaded under us: look again.
        if time.monotonic() > deadline:
            raise AssertionError("the page never showed it")
        time.sleep(0.2)


def create_image_task(server: CapgateServer, seed: int) -> int:
    body = captchas(seed, 1)[0][0]
    answer = server.post(
        "/createTask",
        {"clientKey": BOOTSTRAP_KEY, "task": {"type": "ImageToTextTask", "body": body}},
    )
    task_id: int = answer["taskId"]
    return task_id


def test_log_in_see_a_task_appear_and_a_provider_break(
    browser: Any, start_server: ServerFactory, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # A provider nobody listens for: every task it takes fails, and one failure opens its
    # breaker. Every local answer is "unsure", so each task also goes to the provider, and
    # the local answer stands when it fails.
    config = tmp_path / "c.toml"
    config.write_text(
        "[[providers]]\n"
        'name = "deadprovider"\nkind = "anticaptcha"\nurl = "http://127.0.0.1:9"\n'
        'key_env = "CAPGATE_DEAD_KEY"\ntimeout_seconds = 2.0\n'
    )
    server = start_server(
        None,
        "--config",
        str(config),
        admin_key=ADMIN,
        dead_key="x",
        breaker_failures="1",
        breaker_cooldown_seconds="600",
        ocr_min_confidence="1.01",
    )
    browser.get(server.base + "/dashboard?refresh=1")
    browser.find_element(By.ID, "key").send_keys("not the key")
    browser.find_element(By.ID, "login").click()
    # (The click does not wait for the answer page: look until it is there.)
    eventually(lambda: "not the admin key" in browser.find_element(By.ID, "login-error").text)
    browser.find_element(By.ID, "key").send_keys(ADMIN)
    browser.find_element(By.ID, "login").click()
    eventually(lambda: bool(browser.find_elements(By.ID, "solvers")))
    browser.get(server.base + "/dashboard?refresh=1")

    def breaker() -> str:
        row = browser.find_element(By.CSS_SELECTOR, '#solvers tr[data-solver="deadprovider"]')
        state: str = row.get_attribute("data-breaker") or ""
        return state

    eventually(lambda: breaker() == "closed")
    task_id = create_image_task(server, 1)
    selector = f'#tasks tr[data-task-id="{task_id}"]'
    eventually(lambda: bool(browser.find_elements(By.CSS_SELECTOR, selector)))
    result = server.wait_final(BOOTSTRAP_KEY, task_id)
    assert (result["status"], result["solveCount"]) == ("ready", 2)
    eventually(lambda: breaker() == "open")
    eventually(lambda: browser.find_element(By.ID, "queue-depth").text == "0")

    # The session is a cookie: logging out ends it.
    def log_out() -> bool:
        browser.find_element(By.CSS_SELECTOR, "header form button").click()
        return True

    eventually(log_out)  # (the page reloads itself every second: retry a stale button)
    eventually(lambda: bool(browser.find_elements(By.ID, "key")))


def test_the_dashboard_and_the_admin_api_want_the_admin_key(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(None, admin_key=ADMIN)
    create_image_task(server, 3)
    page = server.http.get("/dashboard")
    assert page.status_code == 200 and 'id="key"' in page.text and "ImageToText" not in page.text
    for cookie in ("capgate_admin=forged", f"capgate_admin={ADMIN}"):
        page = server.http.get("/dashboard", headers={"cookie": cookie})
        assert 'id="key"' in page.text and 'id="tasks"' not in page.text
    for auth in ("", "Bearer wrong", f"Basic {ADMIN}", BOOTSTRAP_KEY):
        answer = server.http.get("/admin/overview", headers={"authorization": auth})
        assert answer.status_code == 401
    # A client's API key is not the admin key.
    answer = server.http.get(
        "/admin/overview", headers={"authorization": f"Bearer {BOOTSTRAP_KEY}"}
    )
    assert answer.status_code == 401
    answer = server.http.get("/admin/overview", headers={"authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200 and answer.json()["keys"][0]["name"] == "bootstrap"
    assert BOOTSTRAP_KEY not in answer.text


def test_providers_tasks_and_doctor_commands(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server(None, admin_key=ADMIN)
    task_id = create_image_task(server, 4)
    server.wait_final(BOOTSTRAP_KEY, task_id)
    env = {"CAPGATE_ADMIN_KEY": ADMIN}
    providers = run_cli("providers", "--server", server.base, env=env)
    assert providers.returncode == 0, providers.stderr
    (ocr_line,) = [line for line in providers.stdout.splitlines() if line.startswith("ocr ")]
    assert ocr_line.split()[3:6] == ["1", "0", "100%"]
    tasks = run_cli("tasks", "--server", server.base, env=env)
    assert tasks.returncode == 0 and f"{task_id}" in tasks.stdout and "ready" in tasks.stdout
    refused = run_cli("tasks", "--server", server.base, "--admin-key", "wrong")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"capgate: error: {server.base} refused the admin key"
    gone = run_cli("providers", "--server", "http://127.0.0.1:9", env=env)
    assert gone.returncode == 1 and gone.stderr.startswith("capgate: error: cannot reach")
    assert "Traceback" not in gone.stderr

    config = tmp_path / "doctor.toml"
    config.write_text(
        '[[providers]]\nname = "up"\nkind = "2captcha"\n'
        f'url = "{server.base}/2captcha"\nkey_env = "UPSTREAM_KEY"\n'
        '[[providers]]\nname = "nokey"\nkind = "capsolver"\nkey_env = "UNSET_KEY_VAR"\n'
    )
    data = str(tmp_path / "doctor-data")
    doctor = run_cli(
        "doctor", "--config", str(config), "--data", data, env={"UPSTREAM_KEY": BOOTSTRAP_KEY}
    )
    lines = doctor.stdout.splitlines()
    assert doctor.returncode == 1, doctor.stdout
    assert any(line.startswith("ok   store sqlite") for line in lines)
    assert any(line.startswith("ok   ocr:") for line in lines)
    assert any(line.startswith("ok   provider up") and "balance" in line for line in lines)
    assert "FAIL provider nokey: $UNSET_KEY_VAR is not set" in lines
    assert BOOTSTRAP_KEY not in doctor.stdout


def test_capgate_serve_makes_an_admin_key_and_says_where(tmp_path: Path) -> None:
    server = CapgateServer(tmp_path / "fresh", log_level="info").start()
    try:
        path = tmp_path / "fresh" / "admin.key"
        key = path.read_text().strip()
        assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
        log = server.log.read_text()
        assert f"/dashboard; log in with the admin key ({path})" in log
        assert key not in log
        answer = httpx.get(
            server.base + "/admin/overview", headers={"authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200
    finally:
        server.stop()
