"""Who is looking: password hashes, signed session cookies, CSRF tokens, proxy-named users.

- Passwords are kept as scrypt hashes (``scrypt$N$r$p$salt$hash``, base64),
  made by ``dicom-node web hash-password``; the stdlib's :func:`hashlib.scrypt`.
- The session is a cookie signed with the session secret (itsdangerous, with
  its issue time; it expires after ``session_hours``), HttpOnly and
  SameSite=Strict. It holds the user name (password mode) and a CSRF token
  that every form repeats in a hidden field (the synchroniser-token pattern).
- In header mode a reverse proxy has logged the user in and names them in
  ``user_header``; the header is believed only from ``trusted_proxies``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from dicom_node.settings import WebSettings

SESSION_COOKIE = "dicom_node_session"
_SCRYPT = (2**14, 8, 1)  # N, r, p: 16 MiB and about 50 ms per hash
_SALT = "dicom-node-web-session"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A scrypt hash of ``password`` in the form the settings take."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    n, r, p = _SCRYPT
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"scrypt${n}${r}${p}${encoded[0]}${encoded[1]}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the hash (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password", salt=b"\0" * 16)


@dataclass(frozen=True)
class WebSession:
    """What the session cookie carries: the logged-in user (or None) and the CSRF token."""

    user: str | None
    csrf: str

    @classmethod
    def anonymous(cls) -> WebSession:
        return cls(None, secrets.token_urlsafe(24))


class Authenticator:
    """Reads and writes sessions, checks passwords, CSRF tokens and proxy headers."""

    def __init__(self, settings: WebSettings, secret: bytes) -> None:
        self.settings = settings
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._users = {user.name: user.password_hash for user in settings.users}
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._max_age = int(settings.session_hours * 3600)

    @property
    def header_mode(self) -> bool:
        return self.settings.auth == "header"

    def read_session(self, request: Request) -> WebSession | None:
        """The session of the request's cookie, or None when absent, forged or expired."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self._max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        user = data.get("u")
        return WebSession(user if isinstance(user, str) else None, data["c"])

    def write_session(self, response: Response, session: WebSession) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.dumps({"u": session.user, "c": session.csrf}),
            max_age=self._max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.settings.cookie_secure,
        )

    def user(self, request: Request, session: WebSession) -> str | None:
        """The logged-in user: from the proxy's header, or from the session."""
        if not self.header_mode:
            return session.user
        if not self.from_trusted_proxy(request):
            return None
        name = request.headers.get(self.settings.user_header, "").strip()
        return name or None

    def from_trusted_proxy(self, request: Request) -> bool:
        if request.client is None:
            return False
        try:
            address = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def check_password(self, name: str, password: str) -> bool:
        """Whether the user exists and the password is right (as slow either way)."""
        encoded = self._users.get(name)
        matches = verify_password(password, encoded or _dummy_hash())
        return encoded is not None and matches


def csrf_matches(session: WebSession, token: str) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), token.encode())
