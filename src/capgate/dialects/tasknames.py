"""The vendors' task type names and their aliases, each mapped to one internal task type.

Names match case-insensitively (`Proxyless` and `ProxyLess` are both in the wild). A name
without "proxyless" means the client sends its own proxy, except where a client sends a
proxy-type name without proxy fields (some do, meaning proxyless): the dialect decides that
from the fields present.
"""

from __future__ import annotations

from capgate.model import TaskType

_NAMES: dict[TaskType, tuple[str, ...]] = {
    TaskType.IMAGE_TO_TEXT: (
        "ImageToTextTask",
        "ImageToText",
        "ImageToTextTaskMuggle",
        # AnySolver's image types (anysolver.com/docs/tasks): AI and human recognition.
        "TextRecognition",
        "HumanRecognition",
    ),
    TaskType.RECAPTCHA_V2: (
        "RecaptchaV2TaskProxyless",
        "RecaptchaV2Task",
        "NoCaptchaTaskProxyless",
        "NoCaptchaTask",
        "ReCaptchaV2TokenProxyLess",
        "ReCaptchaV2Token",
    ),
    TaskType.RECAPTCHA_V2_ENTERPRISE: (
        "RecaptchaV2EnterpriseTaskProxyless",
        "RecaptchaV2EnterpriseTask",
        "ReCaptchaV2EnterpriseTokenProxyLess",
        "ReCaptchaV2EnterpriseToken",
    ),
    TaskType.RECAPTCHA_V3: (
        "RecaptchaV3TaskProxyless",
        "RecaptchaV3Task",
        "RecaptchaV3EnterpriseTask",
        "ReCaptchaV3TokenProxyLess",
        "ReCaptchaV3Token",
        # CapSolver's proxyless enterprise v3 (docs.capsolver.com, reCAPTCHA v3).
        "ReCaptchaV3EnterpriseTaskProxyLess",
    ),
    TaskType.HCAPTCHA: (
        "HCaptchaTaskProxyless",
        "HCaptchaTask",
        "HCaptchaTokenProxyLess",
        "HCaptchaToken",
    ),
    TaskType.TURNSTILE: (
        "TurnstileTaskProxyless",
        "TurnstileTask",
        "AntiTurnstileTaskProxyLess",
        "AntiTurnstileTask",
        "TurnstileTokenProxyLess",
        "TurnstileToken",
    ),
    TaskType.FUNCAPTCHA: ("FunCaptchaTaskProxyless", "FunCaptchaTask"),
    TaskType.GEETEST: ("GeeTestTaskProxyless", "GeeTestTask"),
}

_BY_NAME: dict[str, TaskType] = {
    name.lower(): task_type for task_type, names in _NAMES.items() for name in names
}


def task_type_for(name: str) -> TaskType | None:
    """The internal task type a vendor's type name means, or None if capgate knows none."""
    return _BY_NAME.get(name.lower())
