"""Settings: defaults, the TOML file, the environment and flags, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from capgate.config import load_settings
from capgate.model import TaskType, format_money, parse_money


def test_defaults_are_the_seed_rules() -> None:
    settings = load_settings(env={})
    assert settings.retention_seconds == 86400
    assert settings.max_polls == 120
    assert settings.task_deadline_seconds == 120
    assert settings.prices[TaskType.IMAGE_TO_TEXT] == 1000
    assert settings.max_request_bytes == 1_000_000
    assert settings.max_image_bytes == 600_000


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "capgate.toml"
    config.write_text(
        'port = 9000\nmax_polls = 50\nlocal_solving = false\n[prices]\nImageToText = "0.002"\n'
    )
    env = {"CAPGATE_MAX_POLLS": "60", "CAPGATE_PRICE_TURNSTILE": "0.0005", "OTHER": "x"}
    settings = load_settings(config, env=env, overrides={"port": 9100, "host": None})
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"
    assert settings.max_polls == 60
    assert settings.local_solving is False
    assert settings.prices[TaskType.IMAGE_TO_TEXT] == 2000
    assert settings.prices[TaskType.TURNSTILE] == 500


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CAPGATE_MAX_POLLS": "many"}, "CAPGATE_MAX_POLLS"),
        ({"CAPGATE_LOCAL_SOLVING": "perhaps"}, "expected true or false"),
        ({"CAPGATE_PRICE_MINDREADING": "1"}, "unknown task type"),
        ({"CAPGATE_PRICE_IMAGETOTEXT": "-1"}, "negative"),
        ({"CAPGATE_TASK_DEADLINE_SECONDS": "nan"}, "finite"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(env=env)


def test_unknown_file_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        load_settings(config, env={})


def test_money_round_trips() -> None:
    assert parse_money("0.001") == 1000
    assert parse_money(0.00013) == 130
    assert format_money(1000) == "0.00100"
    assert format_money(2990) == "0.00299"
    assert format_money(0) == "0.00000"
    assert format_money(10_000_000, 2) == "10.00"
    assert format_money(-1500) == "-0.00150"
    with pytest.raises(ValueError):
        parse_money("lots")


def test_lists_come_comma_separated_or_as_toml_arrays(tmp_path: Path) -> None:
    settings = load_settings(env={"CAPGATE_CALLBACK_HOSTS": " a.example , b.example,"})
    assert settings.callback_hosts == ["a.example", "b.example"]
    config = tmp_path / "c.toml"
    config.write_text('callback_allow_networks = ["10.0.0.0/8", "127.0.0.1"]\n')
    networks = load_settings(config, env={}).callback_networks
    assert [str(n) for n in networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    with pytest.raises(ValueError, match="callback_allow_networks"):
        load_settings(env={"CAPGATE_CALLBACK_ALLOW_NETWORKS": "10.0.0.0/33"})


def test_providers_and_policies_come_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'routing_policy = "cheapest"\n'
        '[key_policies]\nvip = "fastest"\n'
        '[[providers]]\nname = "cs"\nkind = "capsolver"\nkey_env = "CS_KEY"\n'
        'types = ["imagetotext", "Turnstile"]\nprices = { ImageToText = "0.0008" }\n'
        "max_concurrent = 4\n"
    )
    settings = load_settings(config, env={})
    assert settings.routing_policy == "cheapest"
    assert settings.key_policies == {"vip": "fastest"}
    (provider,) = settings.providers
    assert (provider.name, provider.kind, provider.max_concurrent) == ("cs", "capsolver", 4)
    assert provider.types == [TaskType.IMAGE_TO_TEXT, TaskType.TURNSTILE]
    assert provider.prices == {TaskType.IMAGE_TO_TEXT: 800}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[providers]]\nname = "x"\nkind = "deathbycaptcha"\n', "kind must be one of"),
        ('[[providers]]\nkind = "vast"\n', "needs a name"),
        ('[[providers]]\nname = "x"\nkind = "vast"\napi_key = "secret"\n', "unknown setting"),
        ('[[providers]]\nname = "ocr"\nkind = "vast"\n', "already taken"),
        ('[[providers]]\nname = "x"\nkind = "vast"\ntypes = ["Nope"]\n', "unknown task type"),
        ('[[providers]]\nname = "x"\nkind = "vast"\nmax_concurrent = 0\n', "at least 1"),
        ('routing_policy = "random"\n', "unknown policy"),
        ('[key_policies]\nk = "random"\n', "unknown policy"),
    ],
)
def test_bad_provider_config_is_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_settings(config, env={})


@pytest.mark.parametrize("store", ["sqlite", "sqlite:///var/lib/capgate/tasks.db"])
def test_power_durability_is_for_sqlite(store: str) -> None:
    settings = load_settings(env={"CAPGATE_DURABILITY": "power", "CAPGATE_STORE": store})
    assert settings.durability == "power"
    assert load_settings(env={}).durability == "process"


@pytest.mark.parametrize(
    ("durability", "store", "message"),
    [
        ("disk", "sqlite", r"durability: unknown value 'disk' \(known: process, power\)"),
        ("power", "redis://localhost:6379/0", "appendfsync always"),
        ("power", "rediss://redis:6380/0", "SQLite store only"),
        ("power", "memory", "memory store"),
    ],
)
def test_durability_the_store_cannot_give_is_refused(
    durability: str, store: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(env={"CAPGATE_DURABILITY": durability, "CAPGATE_STORE": store})


def test_store_from_url_refuses_power_without_sqlite(tmp_path: Path) -> None:
    from capgate.store import SqliteStore, store_from_url

    store = store_from_url("sqlite", tmp_path, durability="power")
    assert isinstance(store, SqliteStore) and store.durability == "power"
    with pytest.raises(ValueError, match="needs the SQLite store"):
        store_from_url("memory", tmp_path, durability="power")
    with pytest.raises(ValueError, match="unknown value"):
        store_from_url("sqlite", tmp_path, durability="battery")
