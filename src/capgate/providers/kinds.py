"""What differs between the vendors' APIs, as data: one `Kind` per upstream service.

Every kind but uCaptcha speaks the createTask / getTaskResult family (the same wire formats
capgate serves as dialects); uCaptcha is the REST cousin. Type names are each vendor's own,
polling rules those its documentation recommends.
"""

from __future__ import annotations

import dataclasses

from capgate.model import TaskType

_ANTICAPTCHA_NAMES = {
    TaskType.IMAGE_TO_TEXT: "ImageToTextTask",
    TaskType.RECAPTCHA_V2: "RecaptchaV2TaskProxyless",
    TaskType.RECAPTCHA_V2_ENTERPRISE: "RecaptchaV2EnterpriseTaskProxyless",
    TaskType.RECAPTCHA_V3: "RecaptchaV3TaskProxyless",
    TaskType.HCAPTCHA: "HCaptchaTaskProxyless",
    TaskType.TURNSTILE: "TurnstileTaskProxyless",
    TaskType.FUNCAPTCHA: "FunCaptchaTaskProxyless",
    TaskType.GEETEST: "GeeTestTaskProxyless",
}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One vendor's API as an upstream adapter needs to know it."""

    name: str
    # The public API's base URL ("": none known, the operator must give one).
    default_url: str
    # The vendor's name for each task type it takes.
    type_names: dict[TaskType, str]
    # Polling rules: the wait before the first poll (image tasks, token tasks), the interval.
    first_wait_image: float
    first_wait_token: float
    interval: float
    # Where the image goes in the task object.
    image_field: str = "body"
    # The report-incorrect method per task type (None: the vendor documents none).
    report_image: str | None = None
    report_other: str | None = None
    # True for uCaptcha's REST API (/task/submit, /task/result/:id, x-api-key).
    rest: bool = False


KINDS: dict[str, Kind] = {
    # anti-captcha.com/apidoc: getTaskResult "wait at least 3 seconds" for images, 10 else.
    "anticaptcha": Kind(
        "anticaptcha",
        "https://api.anti-captcha.com",
        _ANTICAPTCHA_NAMES,
        3.0,
        10.0,
        3.0,
        report_image="reportIncorrectImageCaptcha",
        report_other="reportIncorrectRecaptcha",
    ),
    # 2captcha.com/api-docs: first poll after 5 s (images) or 15-20 s (tokens), then every 5.
    "2captcha": Kind(
        "2captcha",
        "https://api.2captcha.com",
        _ANTICAPTCHA_NAMES,
        5.0,
        15.0,
        5.0,
        report_image="reportIncorrect",
        report_other="reportIncorrect",
    ),
    # CapMonster Cloud speaks Anti-Captcha's protocol (docs.capmonster.cloud).
    "capmonster": Kind(
        "capmonster",
        "https://api.capmonster.cloud",
        _ANTICAPTCHA_NAMES,
        2.0,
        10.0,
        3.0,
        report_image="reportIncorrectImageCaptcha",
        report_other="reportIncorrectRecaptcha",
    ),
    # Seed 002: images are answered inside createTask; tokens within 1 to 30 s.
    "capsolver": Kind(
        "capsolver",
        "https://api.capsolver.com",
        {
            TaskType.IMAGE_TO_TEXT: "ImageToTextTask",
            TaskType.RECAPTCHA_V2: "ReCaptchaV2TaskProxyLess",
            TaskType.RECAPTCHA_V2_ENTERPRISE: "ReCaptchaV2EnterpriseTaskProxyLess",
            TaskType.RECAPTCHA_V3: "ReCaptchaV3TaskProxyLess",
            TaskType.TURNSTILE: "AntiTurnstileTaskProxyLess",
            TaskType.GEETEST: "GeeTestTaskProxyLess",
        },
        1.0,
        3.0,
        2.0,
        report_image="feedbackTask",
        report_other="feedbackTask",
    ),
    # Seed 004: wait 3-5 s after createTask, then poll every 2-3 s. No report method.
    "anysolver": Kind(
        "anysolver",
        "https://api.anysolver.com",
        {
            TaskType.IMAGE_TO_TEXT: "TextRecognition",
            TaskType.RECAPTCHA_V2: "ReCaptchaV2TokenProxyLess",
            TaskType.RECAPTCHA_V2_ENTERPRISE: "ReCaptchaV2EnterpriseTokenProxyLess",
            TaskType.RECAPTCHA_V3: "ReCaptchaV3TokenProxyLess",
            TaskType.HCAPTCHA: "HCaptchaTokenProxyLess",
            TaskType.TURNSTILE: "TurnstileTokenProxyLess",
        },
        3.0,
        3.0,
        2.0,
        image_field="imageBase64",
    ),
    # Seed 003: poll every 3-5 s. Vast documents no report method.
    "vast": Kind("vast", "https://captcha.vast.sh/api/solver", _ANTICAPTCHA_NAMES, 3.0, 3.0, 3.0),
    # Seed 000: the polling loops sleep 2 s. No report method.
    "ucaptcha": Kind(
        "ucaptcha", "https://api.ucaptcha.net", _ANTICAPTCHA_NAMES, 2.0, 2.0, 2.0, rest=True
    ),
}
