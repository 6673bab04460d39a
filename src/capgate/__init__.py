"""capgate: a self-hosted captcha task gateway."""

__version__ = "0.1.0"
