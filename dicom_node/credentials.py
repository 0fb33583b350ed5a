"""Secrets: read from the environment or a file when needed, never held in settings.

Settings name *where* a secret is (``*_env``: an environment variable,
``*_file``: a file, for example a systemd credential or a Docker secret), never
the secret itself, so that the settings object, its ``repr`` and a dump of it
cannot leak one. Messages about a secret name its source, never its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from dicom_node.settings import Settings

MASK = "***"


def read_secret(
    what: str,
    env: str | None,
    file: Path | None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The secret from ``file`` (first) or the environment variable ``env``; None if neither is set.

    Surrounding whitespace (a file's trailing newline) is removed. Raises
    ``ValueError`` naming ``what`` and the source when the source is set but
    unreadable or empty.
    """
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{what}: cannot read {file}: {exc.__class__.__name__}") from exc
        if not value:
            raise ValueError(f"{what}: {file} is empty")
        return value
    if env is not None:
        value = (os.environ if environ is None else environ).get(env, "").strip()
        if not value:
            raise ValueError(f"{what}: environment variable {env} is not set")
        return value
    return None


def redact_url(url: object) -> object:
    """``url`` with the password of its network location replaced by ``***``."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def check_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Problems with the secrets the settings point to (checked at start-up)."""
    problems = []
    alerts = settings.alerts
    sources = [(f"webhook {h.name}", h.secret_env, h.secret_file) for h in alerts.webhooks]
    for hook, env, file in sources:
        if env is None and file is None:
            problems.append(f"{hook}: set secret_env or secret_file (the HMAC signing secret)")
    email = alerts.email
    if email is not None and email.username:
        if email.password_env is None and email.password_file is None:
            problems.append("alerts.email: username is set; set password_env or password_file")
        sources.append(("alerts.email password", email.password_env, email.password_file))
    web = settings.web
    sources.append(("web session secret", web.session_secret_env, web.session_secret_file))
    for what, env, file in sources:
        try:
            read_secret(what, env, file, environ)
        except ValueError as exc:
            problems.append(str(exc))
    return problems
