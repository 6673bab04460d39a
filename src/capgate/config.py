"""Settings from a TOML file and CAPGATE_* environment variables.

Precedence, lowest first: the defaults below, the TOML file, the environment, command-line
flags. Every field of `Settings` is a TOML key of the same name and an environment variable
`CAPGATE_<NAME>` (upper case); prices are the `[prices]` table and `CAPGATE_PRICE_<TYPE>`.
Upstream providers are `[[providers]]` tables and per-key routing policies the
`[key_policies]` table, in the file only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capgate.model import TaskType, parse_money

DEFAULT_PRICES: dict[TaskType, str] = {
    TaskType.IMAGE_TO_TEXT: "0.001",
    TaskType.RECAPTCHA_V2: "0.002",
    TaskType.RECAPTCHA_V2_ENTERPRISE: "0.003",
    TaskType.RECAPTCHA_V3: "0.002",
    TaskType.HCAPTCHA: "0.002",
    TaskType.TURNSTILE: "0.002",
    TaskType.FUNCAPTCHA: "0.003",
    TaskType.GEETEST: "0.002",
}


# How the router orders the solvers that can take a task (docs/providers.md).
POLICIES = ("priority", "cheapest", "fastest", "reliable")


@dataclasses.dataclass
class ProviderSettings:
    """One upstream provider: a commercial service capgate forwards tasks to."""

    name: str
    # Which API it speaks: one of capgate.providers.KINDS.
    kind: str
    # The API's base URL ("": the vendor's public one, where it has one).
    url: str = ""
    # The environment variable that holds the API key; the key itself is never in a file.
    key_env: str = ""
    # Task types it may take (empty: every type its kind supports).
    types: list[TaskType] = dataclasses.field(default_factory=list)
    # What one task of each type costs the operator there (for `cheapest`, and spend).
    prices: dict[TaskType, int] = dataclasses.field(default_factory=dict)
    max_concurrent: int = 10
    # Polling rules (0: the vendor's documented ones).
    first_wait_seconds: float = 0.0
    poll_interval_seconds: float = 0.0
    max_polls: int = 120
    # How long one attempt there may take before the task moves on (0: until its deadline).
    timeout_seconds: float = 0.0

    @property
    def api_key(self) -> str:
        """The key from the environment ("" when unset)."""
        return os.environ.get(self.key_env, "") if self.key_env else ""


@dataclasses.dataclass
class Settings:
    """Everything an operator can set; the defaults are the vendors' documented rules."""

    host: str = "127.0.0.1"
    port: int = 8080
    data: Path = Path("capgate-data")
    store: str = "sqlite"
    # What an acknowledged write survives: "process" (a crash of the server process) or
    # "power" (a power loss or kernel crash too: each commit is fsync'd before any client
    # is answered). SQLite only; see docs/guarantees.md.
    durability: str = "process"
    # Rules from the seed documents.
    retention_seconds: float = 24 * 3600.0
    max_polls: int = 120
    task_deadline_seconds: float = 120.0
    # Solving.
    local_solving: bool = True
    ocr: bool = True
    ocr_processes: int = 1
    # An ONNX model to read with instead of the shipped one ("": DATA/ocr/model.onnx if
    # `capgate ocr train --install` put one there, else the shipped model).
    ocr_model: str = ""
    lease_seconds: float = 30.0
    max_attempts: int = 3
    # Per-key limits (0: unlimited), answered with the dialect's "no slot" error.
    max_tasks_in_flight: int = 0
    max_creates_per_second: float = 0.0
    # Free tasks (test site keys, or a type priced 0) move no money, so these bound them
    # instead, per key: how many may be queued or running (with any other tasks of the
    # key), how many may be created a second (per server process), and how many bytes of
    # fields each may carry (the image, if any, has max_image_bytes). 0: no limit.
    free_tasks_in_flight: int = 20
    free_tasks_per_second: float = 20.0
    free_task_max_bytes: int = 4096
    # Reports of wrong answers: refunded only within this many seconds of the answer, and
    # only while the key's refunds stay at most this share of its paid answers (its first
    # `report_allowance` refunds are always granted). Past either: "report not recorded".
    report_window_seconds: float = 900.0
    max_report_share: float = 0.4
    report_allowance: int = 10
    # The shortest time between two result polls of one task (0: none; real clients poll
    # every 0.2 s or back to back after `ready`, CLIENTS.md), per server process.
    min_poll_interval_seconds: float = 0.0
    # Input limits.
    max_request_bytes: int = 1_000_000
    max_image_bytes: int = 600_000
    max_image_pixels: int = 4_000_000
    # The longest text a task field may hold (a URL, a cookie string, a user agent).
    max_field_chars: int = 8192
    # How long a dialect that answers inside createTask (CapSolver images) waits for it.
    sync_wait_seconds: float = 10.0
    # The longest opt-in long-poll ("waitSeconds" / ?wait=) a client may ask for.
    max_wait_seconds: float = 30.0
    # Callbacks go only to these hosts; to private, loopback, link-local or metadata
    # addresses only inside these networks (CIDR). Both empty: no callbacks at all.
    callback_hosts: list[str] = dataclasses.field(default_factory=list)
    callback_allow_networks: list[str] = dataclasses.field(default_factory=list)
    # Background work.
    sweep_interval_seconds: float = 1.0
    dispatch_idle_seconds: float = 0.5
    # Lets tests move the server's clock through POST /_test/clock; never in production.
    test_clock: bool = False
    log_level: str = "info"
    # "text", or "json" for one JSON object a line (with the request id).
    log_format: str = "text"
    prices: dict[TaskType, int] = dataclasses.field(
        default_factory=lambda: {t: parse_money(p) for t, p in DEFAULT_PRICES.items()}
    )
    # The vendors' documented test site keys, answered locally with their test tokens.
    test_keys: bool = True
    # The operators' key for /dashboard and /admin ("": DATA/admin.key, made on first start).
    admin_key: str = ""
    # A bearer token that GET /metrics must be sent with ("": /metrics is open; its
    # labels name solvers, providers and workers, so set one on an exposed server).
    metrics_key: str = ""
    # The local OCR engines image captchas go through, in the chain's order (capgate's model,
    # then ddddocr): "auto" is capgate's model, plus ddddocr where `capgate[ddddocr]` is
    # installed; or a list of "capgate" and "ddddocr".
    ocr_engines: list[str] = dataclasses.field(default_factory=lambda: ["auto"])
    # Routing: the server's policy, and per key name its own.
    routing_policy: str = "priority"
    key_policies: dict[str, str] = dataclasses.field(default_factory=dict)
    providers: list[ProviderSettings] = dataclasses.field(default_factory=list)
    # A local OCR answer less sure than this goes to an upstream provider, if one takes it.
    ocr_min_confidence: float = 0.0
    # Keep upstream providers' answers to image captchas as labels for `capgate ocr train`
    # (in DATA/labels; an answer reported incorrect is deleted).
    keep_upstream_labels: bool = False
    # Learning each site's captcha from paid upstream answers (docs/learning.md): keep
    # them as labels of their site (at most `learning_max_labels` each, the newest); at
    # `learning_min_labels`, and again at 1.5x what the last candidate learned from, a
    # training job (one at a time across the deployment, `learning_threads` threads,
    # `learning_epochs` passes) fine-tunes a model for the site, promoted if it beats the
    # site's current engine on held-out labels, its threshold set so that the answers it
    # keeps are right `learning_target` of the time. `learning_audit_share` of a promoted
    # model's answers are read upstream too; it is demoted when its checks fall under
    # the target. `learning_jobs`: whether this node runs training jobs (every node
    # serves the models).
    learning: bool = False
    learning_min_labels: int = 500
    learning_max_labels: int = 5000
    learning_target: float = 0.97
    learning_audit_share: float = 0.02
    learning_audit_window: int = 100
    learning_epochs: int = 20  # augmented passes (ocr/augment.py)
    learning_threads: int = 1
    learning_jobs: bool = True
    learning_check_seconds: float = 30.0
    # How often each node looks for a newly promoted or demoted model (any store).
    model_poll_seconds: float = 2.0
    # The circuit breaker: this many failures in a row take a solver out for the cooldown,
    # then one task probes it back in.
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0

    # Slow and idle clients (per server process): a request must arrive whole within the
    # read timeout, a kept-alive connection may idle this long between requests, and past
    # max_connections open connections new requests are answered 503.
    request_read_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 1000
    # The HTTP server of `capgate serve`: "granian" (its RSGI interface, capgate.api.rsgi)
    # or "uvicorn" (ASGI); `serve --server` overrides it.
    http_server: str = "granian"

    @property
    def callback_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The networks callbacks may reach although they are not public."""
        return [ipaddress.ip_network(n, strict=False) for n in self.callback_allow_networks]

    @property
    def ocr_model_path(self) -> Path | None:
        """The model the OCR solver reads with (None: the one shipped in the package)."""
        from capgate.ocr.engine import installed_model

        return Path(self.ocr_model) if self.ocr_model else installed_model(self.data)


_TABLES = ("prices", "providers", "key_policies")
_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name not in _TABLES}


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from the file, the environment and explicit overrides."""
    settings = Settings()
    env = os.environ if env is None else env
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read config file {config_file}: {exc}") from exc
        for name, value in document.items():
            if name == "prices":
                if not isinstance(value, dict):
                    raise ValueError("config: [prices] must be a table of task type = price")
                for type_name, price in value.items():
                    _set_price(settings, type_name, price, "config file")
            elif name == "providers":
                settings.providers = _providers(value)
            elif name == "key_policies":
                if not isinstance(value, dict):
                    raise ValueError("config: [key_policies] must be a table of key name = policy")
                settings.key_policies = {str(k): str(v) for k, v in value.items()}
            else:
                _set(settings, name, value, "config file")
    for var, value in env.items():
        if not var.startswith("CAPGATE_"):
            continue
        name = var.removeprefix("CAPGATE_").lower()
        if name.startswith("price_"):
            _set_price(settings, name.removeprefix("price_"), value, var)
        elif name in _FIELDS:
            _set(settings, name, value, var)
    for name, value in (overrides or {}).items():
        if value is not None:
            _set(settings, name, value, f"--{name.replace('_', '-')}")
    try:
        settings.callback_networks  # noqa: B018 - parse once, so a typo stops the start
    except ValueError as exc:
        raise ValueError(f"callback_allow_networks: {exc}") from None
    _check_learning(settings)
    _check_durability(settings)
    for where, policy in [("routing_policy", settings.routing_policy)] + [
        (f"key_policies.{name}", policy) for name, policy in settings.key_policies.items()
    ]:
        if policy not in POLICIES:
            raise ValueError(f"{where}: unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    return settings


DURABILITIES = ("process", "power")


def _check_durability(settings: Settings) -> None:
    """Refuse a durability no store here can give, so the start stops on it."""
    if settings.durability not in DURABILITIES:
        raise ValueError(
            f"durability: unknown value {settings.durability!r} (known: {', '.join(DURABILITIES)})"
        )
    if settings.durability == "power":
        store = settings.store
        if store.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                'durability = "power" applies to the SQLite store only: with Redis, Redis\'s own'
                " persistence governs it (appendonly yes, appendfsync always); leave durability"
                ' at "process"'
            )
        if store == "memory":
            raise ValueError(
                'durability = "power" cannot be met by the memory store (it keeps nothing)'
            )


def _check_learning(settings: Settings) -> None:
    """Refuse learning settings that cannot work, so a typo stops the start."""
    if not 0 <= settings.learning_audit_share <= 1:
        raise ValueError("learning_audit_share must be from 0 to 1")
    if not 0.5 <= settings.learning_target < 1:
        raise ValueError("learning_target must be at least 0.5 and under 1")
    if settings.learning_min_labels < 20:
        raise ValueError("learning_min_labels must be at least 20 (a fifth is held out)")
    if settings.learning_max_labels < settings.learning_min_labels:
        raise ValueError("learning_max_labels must be at least learning_min_labels")
    if settings.learning_audit_window < 5:
        raise ValueError("learning_audit_window must be at least 5")
    if settings.learning_epochs < 1 or settings.learning_threads < 1:
        raise ValueError("learning_epochs and learning_threads must be at least 1")
    if settings.model_poll_seconds <= 0 or settings.learning_check_seconds <= 0:
        raise ValueError("model_poll_seconds and learning_check_seconds must be over 0")


_PROVIDER_FIELDS = {f.name: f for f in dataclasses.fields(ProviderSettings)}


def _providers(value: Any) -> list[ProviderSettings]:
    """Read the [[providers]] tables, refusing anything a typo could have made."""
    from capgate.providers import KINDS

    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("config: providers must be [[providers]] tables")
    providers: list[ProviderSettings] = []
    for table in value:
        where = f"config: provider {table.get('name', len(providers) + 1)!r}"
        unknown = set(table) - set(_PROVIDER_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
        if not isinstance(table.get("name"), str) or not table["name"]:
            raise ValueError(f"{where}: needs a name")
        if table.get("kind") not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(sorted(KINDS))}")
        if table["name"] in {p.name for p in providers} or table["name"] in ("ocr", "testkeys"):
            raise ValueError(f"{where}: the name is already taken")
        fields: dict[str, Any] = {}
        for name, raw in table.items():
            if name == "types":
                fields[name] = [_task_type(str(t), where) for t in raw]
            elif name == "prices":
                if not isinstance(raw, dict):
                    raise ValueError(f"{where}: prices must be a table of task type = price")
                fields[name] = {_task_type(t, where): parse_money(p) for t, p in raw.items()}
            else:
                try:
                    fields[name] = _coerce(_PROVIDER_FIELDS[name].type, raw)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{where}: bad value {raw!r} for {name}: {exc}") from exc
        provider = ProviderSettings(**fields)
        if provider.max_concurrent < 1:
            raise ValueError(f"{where}: max_concurrent must be at least 1")
        providers.append(provider)
    return providers


def _task_type(name: str, where: str) -> TaskType:
    for task_type in TaskType:
        if task_type.value.lower() == name.lower():
            return task_type
    known = ", ".join(t.value for t in TaskType)
    raise ValueError(f"{where}: unknown task type {name!r} (known: {known})")


def _set(settings: Settings, name: str, value: Any, source: str) -> None:
    field = _FIELDS.get(name)
    if field is None:
        raise ValueError(f"{source}: unknown setting {name!r}")
    try:
        setattr(settings, name, _coerce(field.type, value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: bad value {value!r} for {name}: {exc}") from exc


def _set_price(settings: Settings, type_name: str, price: Any, source: str) -> None:
    task_type = _task_type(str(type_name), source)
    amount = parse_money(price)
    if amount < 0:
        raise ValueError(f"{source}: a price cannot be negative")
    settings.prices[task_type] = amount


def _coerce(type_name: Any, value: Any) -> Any:
    # Field types are strings under `from __future__ import annotations`.
    kind = str(type_name)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError("expected true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise TypeError("expected an integer")
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise TypeError("expected a number")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        return number
    if kind == "Path":
        return Path(str(value))
    if kind == "list[str]":
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]
    return str(value)
