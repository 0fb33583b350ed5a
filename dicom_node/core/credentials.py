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
from urllib.parse import urlsplit, urlunsplit

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
