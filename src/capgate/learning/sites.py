"""A task's site: what a per-site model is learned for and served to (docs/learning.md).

The site is the host of the task's `websiteURL` (the Anti-Captcha family, 2Captcha,
CapSolver and CapMonster accept it on image tasks; the legacy API's `pageurl`), else a
model the task names (CapSolver's `module`, CapMonster's `CapMonsterModule`), else its
key's default site (`capgate keys create --site NAME`). None: no site, the generalist
engines read it as before.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

# Lower-case host names and model names; anything else names no site (it would only be a
# way to fill the registry with junk names).
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,252}[a-z0-9])?")
MODEL_FIELDS = ("module", "CapMonsterModule")


def site_name(value: str) -> str | None:
    """`value` as a site name (lower case, at most 254 characters of a host name's
    alphabet plus `_`), or None if it cannot be one."""
    name = value.strip().lower().rstrip(".")
    return name if _NAME.fullmatch(name) else None


def host_of(url: str) -> str | None:
    """The host of a page URL (`https://a.example:8443/login` → `a.example`), also when
    the scheme is left out; None if there is none."""
    text = url.strip()
    if "//" not in text:
        text = "//" + text
    try:
        host = urllib.parse.urlsplit(text).hostname
    except ValueError:
        return None
    return site_name(host) if host else None


def site_of(params: Mapping[str, Any], key_site: str | None = None) -> str | None:
    """The site of an image task with these parameters, sent with a key whose default
    site is `key_site`."""
    url = params.get("websiteURL")
    if isinstance(url, str) and url and len(url) <= 2048:
        host = host_of(url)
        if host:
            return host
    for field in MODEL_FIELDS:
        model = params.get(field)
        if isinstance(model, str) and model:
            name = site_name(model)
            if name:
                return name
    return site_name(key_site) if key_site else None
