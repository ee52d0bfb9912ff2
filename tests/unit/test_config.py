"""pushstream.yaml → frozen Settings: values, defaults, env overrides and errors that name the key or path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pushstream.config import (
    ENV_CONFIG,
    ConfigError,
    KafkaSettings,
    LimitsSettings,
    Settings,
    WebSettings,
    load_settings,
    settings_from_mapping,
)
from tests.unit.factories import FULL_CONFIG, write_config, write_secrets

MINIMAL_APP = """\
apps:
  demo:
    api_keys: ["k1", "k2"]
"""


def load(tmp_path: Path, text: str = FULL_CONFIG, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write_config(tmp_path, text), env=env or {})


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, text)
    return str(excinfo.value)


# --- a valid file ---------------------------------------------------------------------------------


def test_full_config_loads_every_section(tmp_path: Path) -> None:
    settings = load(tmp_path)

    assert settings.kafka == KafkaSettings(
        broker="kafka://127.0.0.1:9092", topic_prefix="test.", topics_file=None
    )
    assert settings.web.port == 6066
    demo = settings.apps["demo"]
    assert demo.api_keys == ("demo-secret-key",)
    assert demo.apns is not None and demo.fcm is not None and demo.webpush is not None
    assert (demo.apns.key_id, demo.apns.team_id, demo.apns.topic) == (
        "ABC123DEFG",
        "DEF123GHIJ",
        "com.example.app",
    )
    assert demo.apns.environment == "production"
    assert demo.apns.endpoint == "https://localhost:8443"
    assert demo.fcm.project_id == "demo-project"
    assert demo.fcm.endpoint == "http://127.0.0.1:8081"
    assert demo.webpush.vapid_subject == "mailto:ops@example.com"
    assert demo.webpush.allowed_endpoint_hosts == ("*.push.services.mozilla.com", "fcm.googleapis.com")


def test_relative_file_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    settings = load(tmp_path)
    demo = settings.apps["demo"]
    base = tmp_path.resolve()

    assert settings.base_dir == base
    assert demo.apns is not None and demo.fcm is not None and demo.webpush is not None
    assert demo.apns.key_file == base / "keys/AuthKey_ABC123DEFG.p8"
    assert demo.apns.ca_file == base / "certs/ca.pem"
    assert demo.fcm.credentials_file == base / "keys/service-account.json"
    assert demo.webpush.vapid_private_key_file == base / "keys/vapid.pem"


def test_absolute_file_paths_are_kept(tmp_path: Path) -> None:
    key = tmp_path / "elsewhere" / "key.p8"
    key.parent.mkdir()
    key.write_text("k")
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    text = f"""\
apps:
  demo:
    apns: {{key_file: {key}, key_id: K, team_id: T, topic: com.example}}
"""
    settings = load_settings(write_config(config_dir, text, secrets=False), env={})
    apns = settings.apps["demo"].apns
    assert apns is not None and apns.key_file == key


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")

    assert settings.kafka == KafkaSettings()
    assert settings.web == WebSettings()
    assert settings.limits == LimitsSettings()
    assert dict(settings.apps) == {}


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL_APP)
    demo = settings.apps["demo"]

    assert settings.kafka.broker == "kafka://127.0.0.1:9092"
    assert settings.kafka.topic_prefix == ""
    assert settings.web.port == 6066
    assert (demo.apns, demo.fcm, demo.webpush) == (None, None, None)
    assert settings.limits.max_record_bytes == 64 * 1024


def test_optional_values_may_be_null(tmp_path: Path) -> None:
    text = """\
apps:
  demo:
    fcm: {credentials_file: keys/service-account.json, project_id: p, endpoint: null, ca_file: null}
"""
    fcm = load(tmp_path, text).apps["demo"].fcm
    assert fcm is not None and fcm.endpoint is None and fcm.ca_file is None


def test_integer_given_for_a_float_setting_becomes_a_float(tmp_path: Path) -> None:
    text = """\
apps:
  demo:
    fcm: {credentials_file: keys/service-account.json, project_id: p, timeout_seconds: 5}
"""
    fcm = load(tmp_path, text).apps["demo"].fcm
    assert fcm is not None
    assert fcm.timeout_seconds == 5.0 and isinstance(fcm.timeout_seconds, float)


def test_sandbox_environment_is_accepted(tmp_path: Path) -> None:
    text = FULL_CONFIG.replace("environment: production", "environment: sandbox")
    apns = load(tmp_path, text).apps["demo"].apns
    assert apns is not None and apns.environment == "sandbox"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.kafka = KafkaSettings()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.kafka.broker = "kafka://elsewhere:9092"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.apps["demo"].api_keys = ()  # type: ignore[misc]


def test_api_keys_never_appear_in_a_repr(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert "demo-secret-key" not in repr(settings)
    assert "demo-secret-key" not in repr(settings.apps["demo"])


# --- helpers on Settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"), [("", "pushstream.devices"), ("prod.", "prod.pushstream.devices")]
)
def test_topic_applies_the_prefix(prefix: str, expected: str) -> None:
    settings = Settings(kafka=KafkaSettings(topic_prefix=prefix))
    assert settings.topic("pushstream.devices") == expected


def test_app_lookup_and_api_key_mapping(tmp_path: Path) -> None:
    text = """\
apps:
  demo: {api_keys: ["k-demo"]}
  shop: {api_keys: ["k-shop-1", "k-shop-2"]}
"""
    settings = load(tmp_path, text)

    assert settings.app("shop") is settings.apps["shop"]
    assert settings.app("missing") is None
    assert settings.app_for_key("k-demo") == "demo"
    assert settings.app_for_key("k-shop-2") == "shop"
    assert settings.app_for_key("k-unknown") is None
    assert settings.app_for_key("") is None


def test_platform_configured_follows_the_provider_sections(tmp_path: Path) -> None:
    text = """\
apps:
  demo:
    fcm: {credentials_file: keys/service-account.json, project_id: p}
"""
    demo = load(tmp_path, text).apps["demo"]
    assert [p for p in ("apns", "fcm", "webpush") if demo.platform_configured(p)] == ["fcm"]


# --- where the file comes from --------------------------------------------------------------------


def test_config_path_comes_from_the_environment_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL_APP, name="custom.yaml")
    settings = load_settings(env={ENV_CONFIG: str(path)})
    assert settings.apps["demo"].api_keys == ("k1", "k2")


def test_explicit_path_wins_over_the_environment_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL_APP, name="explicit.yaml")
    settings = load_settings(path, env={ENV_CONFIG: str(tmp_path / "does-not-exist.yaml")})
    assert "demo" in settings.apps


def test_default_path_is_pushstream_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, MINIMAL_APP)
    monkeypatch.chdir(tmp_path)
    assert "demo" in load_settings(env={}).apps


def test_missing_file_names_the_path_and_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as excinfo:
        load_settings(missing, env={})
    assert str(missing) in str(excinfo.value)
    assert ENV_CONFIG in str(excinfo.value)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path, env={})


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path, "apps: [unclosed\n")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pushstream.yaml"
    path.write_bytes(b'apps:\n  demo: {api_keys: ["\xff\xfe"]}\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(path, env={})


# --- invalid content: the message names the key ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("kafak: {}\n", "kafak"),
        ("kafka: {brokr: kafka://x:1}\n", "kafka.brokr"),
        ("web: {prot: 1}\n", "web.prot"),
        ("base_dir: /tmp\n", "base_dir"),
        ("apps: {demo: {api_key: [x]}}\n", "apps.demo.api_key"),
        (
            "apps: {demo: {apns: {key_file: keys/AuthKey_ABC123DEFG.p8, key_id: K, team_id: T, topic: t, "
            "keyid: K}}}\n",
            "apps.demo.apns.keyid",
        ),
        (
            "apps: {demo: {webpush: {vapid_private_key_file: keys/vapid.pem, vapid_subject: s, "
            "allowed_hosts: []}}}\n",
            "apps.demo.webpush.allowed_hosts",
        ),
        ("limits: {max_bytes: 1}\n", "limits.max_bytes"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(tmp_path, text)
    assert f": {key}: unknown key" in message


def test_unknown_keys_of_mixed_types_are_still_a_config_error(tmp_path: Path) -> None:
    # YAML turns `1:` into an int key and `on:` into a bool key; sorting them with strings must not crash.
    message = config_error(tmp_path, "1: x\nkafak: y\n")
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("provider", "body", "key"),
    [
        ("apns", "{key_file: keys/AuthKey_ABC123DEFG.p8, team_id: T, topic: t}", "apps.demo.apns.key_id"),
        ("apns", "{key_id: K, team_id: T, topic: t}", "apps.demo.apns.key_file"),
        ("apns", "{key_file: keys/AuthKey_ABC123DEFG.p8, key_id: K, team_id: T}", "apps.demo.apns.topic"),
        ("fcm", "{credentials_file: keys/service-account.json}", "apps.demo.fcm.project_id"),
        ("webpush", "{vapid_private_key_file: keys/vapid.pem}", "apps.demo.webpush.vapid_subject"),
    ],
)
def test_missing_required_keys_are_errors_naming_the_key(
    tmp_path: Path, provider: str, body: str, key: str
) -> None:
    message = config_error(tmp_path, f"apps:\n  demo:\n    {provider}: {body}\n")
    assert f"{key}: required key is missing" in message


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("web: {port: '6066'}\n", "web.port", "expected an integer"),
        ("web: {port: true}\n", "web.port", "expected an integer"),
        ("web: {port: 6066.5}\n", "web.port", "expected an integer"),
        ("web: {host: 127}\n", "web.host", "expected a string"),
        ("web: [1]\n", "web", "expected a mapping"),
        ("kafka: [kafka://x:1]\n", "kafka", "expected a mapping"),
        ("kafka: kafka://x:1\n", "kafka", "expected a mapping"),
        ("kafka: {topic_prefix: 5}\n", "kafka.topic_prefix", "expected a string"),
        ("apps: [demo]\n", "apps", "expected a mapping"),
        ("apps: {demo: null}\n", "apps.demo", "expected a mapping"),
        ("apps: {demo: {api_keys: k1}}\n", "apps.demo.api_keys", "expected a list"),
        ("apps: {demo: {api_keys: [k1, 2]}}\n", "apps.demo.api_keys[1]", "expected a string"),
        (
            "apps: {demo: {apns: {key_file: keys/AuthKey_ABC123DEFG.p8, key_id: K, team_id: T, topic: t, "
            "environment: staging}}}\n",
            "apps.demo.apns.environment",
            "must be one of production, sandbox",
        ),
        (
            "apps: {demo: {apns: {key_file: 5, key_id: K, team_id: T, topic: t}}}\n",
            "apps.demo.apns.key_file",
            "expected a file path",
        ),
        (
            "apps: {demo: {apns: {key_file: '', key_id: K, team_id: T, topic: t}}}\n",
            "apps.demo.apns.key_file",
            "expected a file path",
        ),
        (
            "apps: {demo: {fcm: {credentials_file: keys/service-account.json, project_id: p, "
            "timeout_seconds: '10'}}}\n",
            "apps.demo.fcm.timeout_seconds",
            "expected a number",
        ),
        (
            "apps: {demo: {fcm: {credentials_file: keys/service-account.json, project_id: p, "
            "timeout_seconds: false}}}\n",
            "apps.demo.fcm.timeout_seconds",
            "expected a number",
        ),
        ("limits: {max_record_bytes: 1.5}\n", "limits.max_record_bytes", "expected an integer"),
        ("pipeline: {ingest_within_seconds: fast}\n", "pipeline.ingest_within_seconds", "expected a number"),
    ],
)
def test_wrong_types_are_errors_naming_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    message = config_error(tmp_path, text)
    assert f": {key}: {problem}" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "the top level must be a mapping" in config_error(tmp_path, "- a\n- b\n")


@pytest.mark.parametrize("app_id", ["a/b", "''"])
def test_app_ids_must_be_usable_in_user_keys(tmp_path: Path, app_id: str) -> None:
    message = config_error(tmp_path, f"apps:\n  {app_id}: {{}}\n")
    assert "app id" in message and "'/'" in message


@pytest.mark.parametrize(
    ("missing", "key"),
    [
        ("keys/AuthKey_ABC123DEFG.p8", "apps.demo.apns.key_file"),
        ("certs/ca.pem", "apps.demo.apns.ca_file"),
        ("keys/service-account.json", "apps.demo.fcm.credentials_file"),
        ("keys/vapid.pem", "apps.demo.webpush.vapid_private_key_file"),
    ],
)
def test_missing_secret_files_name_the_key_and_the_path(tmp_path: Path, missing: str, key: str) -> None:
    write_secrets(tmp_path)
    (tmp_path / missing).unlink()
    path = write_config(tmp_path, secrets=False)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    message = str(excinfo.value)
    assert f"{key}: file not found" in message
    assert str(tmp_path.resolve() / missing) in message


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    write_secrets(tmp_path)
    (tmp_path / "keys/vapid.pem").unlink()
    (tmp_path / "keys/vapid.pem").mkdir()
    with pytest.raises(ConfigError, match=r"apps\.demo\.webpush\.vapid_private_key_file: file not found"):
        load_settings(write_config(tmp_path, secrets=False), env={})


def test_error_messages_start_with_the_config_file(tmp_path: Path) -> None:
    message = config_error(tmp_path, "web: {port: x}\n")
    assert message.startswith(str(tmp_path / "pushstream.yaml"))


# --- environment overrides of the kafka section ---------------------------------------------------


def test_environment_overrides_the_kafka_section(tmp_path: Path) -> None:
    env = {
        "PUSHSTREAM_KAFKA_BROKER": "kafka://broker-1:9092;kafka://broker-2:9092",
        "PUSHSTREAM_KAFKA_TOPIC_PREFIX": "staging.",
        "PUSHSTREAM_KAFKA_TOPICS_FILE": "/etc/pushstream/topics.yaml",
    }
    settings = load(tmp_path, env=env)
    assert settings.kafka == KafkaSettings(
        broker="kafka://broker-1:9092;kafka://broker-2:9092",
        topic_prefix="staging.",
        topics_file="/etc/pushstream/topics.yaml",
    )
    assert settings.topic("pushstream.status") == "staging.pushstream.status"


def test_environment_override_applies_without_a_kafka_section(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL_APP, env={"PUSHSTREAM_KAFKA_BROKER": "kafka://other:9093"})
    assert settings.kafka.broker == "kafka://other:9093"
    assert settings.kafka.topic_prefix == ""


def test_empty_or_unrelated_environment_variables_change_nothing(tmp_path: Path) -> None:
    env = {
        "PUSHSTREAM_KAFKA_BROKER": "",
        "PUSHSTREAM_WEB_PORT": "1",
        "PUSHSTREAM_KAFKA_BROKERS": "kafka://x:1",
    }
    settings = load(tmp_path, env=env)
    assert settings.kafka.broker == "kafka://127.0.0.1:9092"
    assert settings.web.port == 6066


def test_settings_from_mapping_does_not_modify_its_input(tmp_path: Path) -> None:
    raw = {"kafka": {"broker": "kafka://a:1"}}
    settings = settings_from_mapping(raw, base_dir=tmp_path, env={"PUSHSTREAM_KAFKA_BROKER": "kafka://b:2"})
    assert settings.kafka.broker == "kafka://b:2"
    assert raw == {"kafka": {"broker": "kafka://a:1"}}
    assert settings.base_dir == tmp_path


def test_settings_from_mapping_rejects_a_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inline: the top level must be a mapping"):
        settings_from_mapping(["x"], base_dir=tmp_path, source="inline")


# --- api_keys_file and default_timezone -----------------------------------------------------------


def test_api_keys_file_gives_one_key_per_line_without_blanks_and_comments(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "shop.keys").write_text("# rotated 2026-11\nk-file-1\n\n   \n  k-file-2  \n#k-old\n")
    text = """\
apps:
  shop: {api_keys_file: keys/shop.keys}
"""
    settings = load(tmp_path, text)
    shop = settings.apps["shop"]
    assert shop.api_keys == ("k-file-1", "k-file-2")
    assert shop.api_keys_file == tmp_path / "keys" / "shop.keys"
    assert settings.app_for_key("k-file-2") == "shop"
    assert settings.app_for_key("#k-old") is None and settings.app_for_key("") is None
    assert "k-file" not in repr(settings)


def test_inline_keys_and_the_keys_file_are_a_union(tmp_path: Path) -> None:
    (tmp_path / "demo.keys").write_text("k-shared\nk-file\n")
    text = """\
apps:
  demo: {api_keys: ["k-inline", "k-shared"], api_keys_file: demo.keys}
"""
    settings = load(tmp_path, text)
    assert settings.apps["demo"].api_keys == ("k-inline", "k-shared", "k-file")
    assert {settings.app_for_key(k) for k in ("k-inline", "k-shared", "k-file")} == {"demo"}


def test_an_app_with_neither_keys_nor_a_keys_file_has_no_http_access(tmp_path: Path) -> None:
    (tmp_path / "empty.keys").write_text("# nobody yet\n\n")
    text = """\
apps:
  demo: {}
  shop: {api_keys_file: empty.keys}
"""
    settings = load(tmp_path, text)
    assert settings.apps["demo"].api_keys == () and settings.apps["shop"].api_keys == ()
    assert settings.app_for_key("# nobody yet") is None


def test_a_missing_or_unreadable_keys_file_names_the_key(tmp_path: Path) -> None:
    missing = config_error(tmp_path, "apps:\n  demo: {api_keys_file: nope.keys}\n")
    assert "apps.demo.api_keys_file" in missing and "file not found" in missing
    (tmp_path / "binary.keys").write_bytes(b"\xff\xfe secret\n")
    unreadable = config_error(tmp_path, "apps:\n  demo: {api_keys_file: binary.keys}\n")
    assert "apps.demo.api_keys_file" in unreadable and "secret" not in unreadable


@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires"])
def test_default_timezone_is_an_iana_zone_exposed_as_a_zone(tmp_path: Path, zone: str) -> None:
    import zoneinfo

    settings = load(tmp_path, f"apps:\n  demo: {{default_timezone: {zone}}}\n")
    assert settings.apps["demo"].default_timezone == zone
    assert settings.apps["demo"].default_zone == zoneinfo.ZoneInfo(zone)


def test_without_default_timezone_the_default_zone_is_utc(tmp_path: Path) -> None:
    import datetime as dt

    settings = load(tmp_path, MINIMAL_APP)
    assert settings.apps["demo"].default_timezone is None and settings.apps["demo"].default_zone == dt.UTC


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd", "''", "42"])
def test_an_unknown_default_timezone_is_a_config_error_naming_the_key(tmp_path: Path, zone: str) -> None:
    message = config_error(tmp_path, f"apps:\n  shop: {{default_timezone: {zone}}}\n")
    assert "apps.shop.default_timezone" in message
def test_retry_attempts_per_class_are_checked_at_load(tmp_path: Path) -> None:
    settings = settings_from_mapping({"pipeline": {"max_attempts_by_class": {"throttled": 8},
                                                   "retry_after_cap_seconds": 60}}, base_dir=tmp_path)
    assert settings.pipeline.max_attempts_by_class == {"throttled": 8}
    assert settings.pipeline.retry_after_cap_seconds == 60.0
    with pytest.raises(ConfigError, match=r"pipeline.max_attempts_by_class.slow: unknown retry class \(known: "
                                          r"throttled, unavailable, transport, reauth\)"):
        settings_from_mapping({"pipeline": {"max_attempts_by_class": {"slow": 2}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"pipeline\.max_attempts_by_class\.reauth: must be at least 1"):
        settings_from_mapping({"pipeline": {"max_attempts_by_class": {"reauth": 0}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="expected an integer"):
        settings_from_mapping({"pipeline": {"max_attempts_by_class": {"reauth": "3"}}}, base_dir=tmp_path)
