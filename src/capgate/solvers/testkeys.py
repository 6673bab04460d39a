"""The vendors' documented test site keys, answered locally with their test tokens.

These keys exist so integrations can be tested without solving anything: a site configured
with them accepts the documented dummy response. capgate answers them for free, so a client
can exercise its whole token flow against capgate at no cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capgate.model import ErrorCode, Solution, Task, TaskType
from capgate.solvers.base import SolveError, Solver

# Google's reCAPTCHA v2 test key: every verification with the test secret passes, whatever
# the response, and Google documents no particular token, so capgate's is plainly a test one.
RECAPTCHA_V2_TEST_KEY = "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI"
RECAPTCHA_TEST_TOKEN = "capgate-test-token.recaptcha-v2.6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI"

# hCaptcha's test site keys and the response each one yields.
HCAPTCHA_TEST_KEYS = {
    "10000000-ffff-ffff-ffff-000000000001": "10000000-aaaa-bbbb-cccc-000000000001",
    "20000000-ffff-ffff-ffff-000000000002": "20000000-aaaa-bbbb-cccc-000000000002",
    "30000000-ffff-ffff-ffff-000000000003": "30000000-aaaa-bbbb-cccc-000000000003",
}

# Cloudflare Turnstile's test site keys: True passes (with the dummy token), False blocks.
TURNSTILE_TEST_KEYS = {
    "1x00000000000000000000AA": True,
    "1x00000000000000000000BB": True,
    "3x00000000000000000000FF": True,
    "2x00000000000000000000AB": False,
    "2x00000000000000000000BB": False,
}
TURNSTILE_DUMMY_TOKEN = "XXXX.DUMMY.TOKEN.XXXX"

# The user agent a test-key answer carries when the client sent none: the one in 2Captcha's
# documented Turnstile answer (2captcha.com/api-docs/cloudflare-turnstile). Clients that
# require `solution.userAgent` (async-2captcha's Turnstile model) then get one.
DOCUMENTED_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"
    " (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36"
)


class TestKeysSolver(Solver):
    """Answers tasks for the vendors' documented test site keys."""

    __test__ = False  # Not a pytest test class, whatever its name says.
    name = "testkeys"
    free = True
    types = frozenset({TaskType.RECAPTCHA_V2, TaskType.HCAPTCHA, TaskType.TURNSTILE})

    def accepts(self, task_type: TaskType, params: Mapping[str, Any]) -> bool:
        site_key = params.get("websiteKey")
        if task_type is TaskType.RECAPTCHA_V2:
            return site_key == RECAPTCHA_V2_TEST_KEY
        if task_type is TaskType.HCAPTCHA:
            return site_key in HCAPTCHA_TEST_KEYS
        if task_type is TaskType.TURNSTILE:
            return site_key in TURNSTILE_TEST_KEYS
        return False

    async def solve(self, task: Task) -> Solution:
        site_key = str(task.params.get("websiteKey"))
        user_agent = task.params.get("userAgent")
        agent = user_agent if isinstance(user_agent, str) and user_agent else DOCUMENTED_USER_AGENT
        if task.type is TaskType.RECAPTCHA_V2 and site_key == RECAPTCHA_V2_TEST_KEY:
            return Solution(token=RECAPTCHA_TEST_TOKEN, user_agent=agent)
        if task.type is TaskType.HCAPTCHA and site_key in HCAPTCHA_TEST_KEYS:
            return Solution(token=HCAPTCHA_TEST_KEYS[site_key], user_agent=agent)
        if task.type is TaskType.TURNSTILE and site_key in TURNSTILE_TEST_KEYS:
            if not TURNSTILE_TEST_KEYS[site_key]:
                raise SolveError(
                    ErrorCode.CAPTCHA_UNSOLVABLE,
                    f"Turnstile test key {site_key} always blocks, as Cloudflare documents",
                )
            return Solution(token=TURNSTILE_DUMMY_TOKEN, user_agent=agent)
        raise SolveError(ErrorCode.TASK_NOT_SUPPORTED, "Not a documented test site key")
