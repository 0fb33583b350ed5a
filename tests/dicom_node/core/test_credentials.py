"""Secrets come from the environment or files and never show in settings, dumps or logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from dicom_node.cli.main import main
from dicom_node.core.credentials import read_secret, redact_url
from dicom_node.core.logs import JSONFormatter
from dicom_node.core.settings import check_secrets, load_settings

DB_PASSWORD = "db-pw-1f2e3d"
REDIS_PASSWORD = "redis-pw-4c5b6a"
SMTP_PASSWORD = "smtp-pw-7a8b9c"
HOOK_SECRET = "hook-secret-0d1e2f"
SECRETS = (DB_PASSWORD, REDIS_PASSWORD, SMTP_PASSWORD, HOOK_SECRET)


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_PASSWORD + "\n")
    return {
        "DICOM_NODE_DATA_DIR": str(tmp_path),
        "DICOM_NODE_DATABASE_URL": f"postgresql://node:{DB_PASSWORD}@db.example.org/node",
        "DICOM_NODE_BROKER_URL": f"redis://:{REDIS_PASSWORD}@redis.example.org:6379/0",
        "DICOM_NODE_ALERTS__EMAIL": json.dumps(
            {
                "smtp_host": "smtp.example.org",
                "username": "node",
                "password_file": str(password_file),
                "sender": "node@example.org",
                "recipients": ["ward@example.org"],
            }
        ),
        "DICOM_NODE_ALERTS__WEBHOOKS": json.dumps(
            [{"name": "ward", "url": "https://hooks.example.org/", "secret_env": "HOOK_SECRET"}]
        ),
        "HOOK_SECRET": HOOK_SECRET,
    }


def test_secrets_are_read_from_their_source(environ: dict[str, str]) -> None:
    settings = load_settings(environ=environ)
    assert settings.alerts.email is not None
    assert settings.alerts.email.password() == SMTP_PASSWORD
    hook = settings.alerts.webhooks[0]
    assert read_secret("hook", hook.secret_env, hook.secret_file, environ) == HOOK_SECRET
    assert check_secrets(settings, environ) == []


def test_repr_and_dump_hold_no_secret(environ: dict[str, str]) -> None:
    settings = load_settings(environ=environ)
    shown = [repr(settings), str(settings), json.dumps(settings.redacted_dump())]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text
    dumped = settings.redacted_dump()
    assert dumped["database_url"] == "postgresql://node:***@db.example.org/node"
    assert dumped["broker_url"] == "redis://:***@redis.example.org:6379/0"
    assert settings.resolved_database_url.endswith(f"node:{DB_PASSWORD}@db.example.org/node")


def test_the_settings_command_prints_no_secret(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["alerts"]["webhooks"][0]["secret_env"] == "HOOK_SECRET"
    for secret in SECRETS:
        assert secret not in result.output


def test_missing_secrets_are_named_without_values(environ: dict[str, str], tmp_path: Path) -> None:
    del environ["HOOK_SECRET"]
    (tmp_path / "smtp-password").write_text("")
    problems = check_secrets(load_settings(environ=environ), environ)
    assert problems == [
        "webhook ward: environment variable HOOK_SECRET is not set",
        f"alerts.email password: {tmp_path / 'smtp-password'} is empty",
    ]


def test_the_dashboard_session_secret_is_checked_too(environ: dict[str, str]) -> None:
    environ["DICOM_NODE_WEB__SESSION_SECRET_ENV"] = "WEB_SESSION_SECRET"
    assert check_secrets(load_settings(environ=environ), environ) == [
        "web session secret: environment variable WEB_SESSION_SECRET is not set"
    ]


def test_a_webhook_without_a_secret_source_is_a_problem(environ: dict[str, str]) -> None:
    environ["DICOM_NODE_ALERTS__WEBHOOKS"] = '[{"name": "ward", "url": "https://h.example.org/"}]'
    assert check_secrets(load_settings(environ=environ), environ) == [
        "webhook ward: set secret_env or secret_file (the HMAC signing secret)"
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("sqlite:////var/lib/x.sqlite", "sqlite:////var/lib/x.sqlite"),
        (None, None),
    ],
)
def test_redact_url(url: str | None, shown: str | None) -> None:
    assert redact_url(url) == shown


def test_settings_logged_through_json_show_no_secret(environ: dict[str, str]) -> None:
    settings = load_settings(environ=environ)
    record = logging.LogRecord("dicom_node", logging.INFO, __file__, 1, "%r", (settings,), None)
    line = JSONFormatter().format(record)
    for secret in SECRETS:
        assert secret not in line
