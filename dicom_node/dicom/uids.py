"""DICOM unique identifiers: checking received UIDs and making our own.

PS3.5 9.1: a UID is at most 64 characters of digits and full stops; each
component is a number without leading zeros. Legacy equipment sometimes
sends components with leading zeros; those are accepted (they are harmless
as file names) but every other deviation is refused, so that a UID can be
used as a path component without escaping the spool.
"""

from __future__ import annotations

import re
import uuid

_SAFE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STRICT_COMPONENT = re.compile(r"^(0|[1-9][0-9]*)$")
MAX_UID_LENGTH = 64


class InvalidUID(ValueError):
    """A UID that breaks the DICOM UID grammar."""


def check_uid(value: object, attribute: str) -> str:
    """Return ``value`` as a UID string or raise :class:`InvalidUID` naming ``attribute``."""
    if value is None or value == "":
        raise InvalidUID(f"{attribute} is missing")
    if not isinstance(value, str):
        raise InvalidUID(f"{attribute} has more than one value or is not text: {value!r}")
    text = value.rstrip("\x00 ")
    if len(text) > MAX_UID_LENGTH:
        raise InvalidUID(f"{attribute} is longer than {MAX_UID_LENGTH} characters: {text!r}")
    if not _SAFE.match(text):
        raise InvalidUID(
            f"{attribute} {text!r} is not a valid UID (only digits separated by single full stops)"
        )
    return text


def is_strict_uid(value: str) -> bool:
    """True when every component also lacks leading zeros (PS3.5 9.1)."""
    return bool(_SAFE.match(value)) and all(
        _STRICT_COMPONENT.match(part) for part in value.split(".")
    )


#: Namespace of the node's derived UIDs (2.25 UUID-derived UIDs, PS3.5 B.2)
UID_NAMESPACE = uuid.UUID("6f1b1f5e-3d5a-4c7e-9a41-2a1d0c6e8b11")


def derived_uid(*parts: object) -> str:
    """A UID that depends only on ``parts``: the same inputs give the same UID (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(str(p) for p in parts)).int}"
