"""Who is looking: password hashes, signed session cookies, CSRF tokens, proxy-named users.

- Passwords are kept as scrypt hashes (``scrypt$N$r$p$salt$hash``, base64),
  made by ``dicom-node web hash-password``; the stdlib's :func:`hashlib.scrypt`.
- The session is a cookie signed with the session secret (itsdangerous, with
  its issue time; it expires after ``session_hours``), HttpOnly and
  SameSite=Strict. It holds the user name (password mode), a random session
  ID and a CSRF token that every form repeats in a hidden field (the
  synchroniser-token pattern).
- Logging out revokes the session ID in the database (:class:`Revocations`):
  a copy of the cookie is refused from then on, by every process that serves
  the dashboard, until it would have expired anyway.
- Failed logins are throttled per user name and per address
  (:class:`LoginThrottle`): after ``login_attempts`` failures within the
  lock-out window, further attempts are refused without checking the password
  for ``login_lockout_seconds``, doubling with each further failure.
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
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from dicom_node.core.settings import WebSettings
from dicom_node.db.models import RevokedSession

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
    """What the session cookie carries: the logged-in user (or None), its ID, the CSRF token."""

    user: str | None
    csrf: str
    session_id: str | None = None

    @classmethod
    def anonymous(cls) -> WebSession:
        return cls(None, secrets.token_urlsafe(24))

    @classmethod
    def logged_in(cls, user: str) -> WebSession:
        return cls(user, secrets.token_urlsafe(24), secrets.token_urlsafe(24))


class Revocations:
    """Session IDs ended by logging out, kept in the database until they would have expired."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def revoke(self, session_id: str, expires_at: datetime) -> None:
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
                session.add(RevokedSession(session_id=session_id, expires_at=expires_at))
        except IntegrityError:
            pass  # revoked already (a second logout with the same cookie)

    def is_revoked(self, session_id: str) -> bool:
        with self._sessions() as session:
            found = session.scalar(
                select(RevokedSession.session_id).where(RevokedSession.session_id == session_id)
            )
        return found is not None


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    """Failed logins per user name and per address; locks both out after too many."""

    _WINDOW_SECONDS = 15 * 60
    _MAX_LOCKOUT_SECONDS = 3600.0
    _MAX_KEYS = 10_000

    def __init__(self, attempts: int, lockout_seconds: float) -> None:
        self._attempts = attempts
        self._lockout = lockout_seconds
        self._failures: dict[tuple[str, str], _Failures] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, user: str, address: str, now: float | None = None) -> float:
        """How long this user and address must wait before trying again (0: try now)."""
        now = time.monotonic() if now is None else now
        keys = (("user", user), ("address", address))
        with self._lock:
            waits = [
                self._failures[key].locked_until - now for key in keys if key in self._failures
            ]
        return max([0.0, *waits])

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) > self._MAX_KEYS:
                self._forget_old(now)
            for key in (("user", user), ("address", address)):
                entry = self._failures.setdefault(key, _Failures())
                entry.times = [t for t in entry.times if now - t < self._WINDOW_SECONDS] + [now]
                over = len(entry.times) - self._attempts
                if over >= 0:
                    lockout = min(self._lockout * 2**over, self._MAX_LOCKOUT_SECONDS)
                    entry.locked_until = now + lockout

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user), None)

    def _forget_old(self, now: float) -> None:
        for key in [
            key
            for key, entry in self._failures.items()
            if entry.locked_until < now
            and all(now - t >= self._WINDOW_SECONDS for t in entry.times)
        ]:
            del self._failures[key]


class Authenticator:
    """Reads and writes sessions, checks passwords, CSRF tokens and proxy headers."""

    def __init__(
        self, settings: WebSettings, secret: bytes, revocations: Revocations | None = None
    ) -> None:
        self.settings = settings
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._users = {user.name: user.password_hash for user in settings.users}
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._max_age = int(settings.session_hours * 3600)
        self._revocations = revocations
        self.throttle = LoginThrottle(settings.login_attempts, settings.login_lockout_seconds)

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
        session_id = data.get("s")
        if not isinstance(session_id, str):
            session_id = None
        revocations = self._revocations
        if session_id and revocations is not None and revocations.is_revoked(session_id):
            return None
        return WebSession(user if isinstance(user, str) else None, data["c"], session_id)

    def revoke(self, session: WebSession) -> None:
        """End ``session`` for good: its cookie is refused from now on (logging out)."""
        if session.session_id and self._revocations is not None:
            expires = datetime.now(UTC) + timedelta(seconds=self._max_age)
            self._revocations.revoke(session.session_id, expires)

    def write_session(self, response: Response, session: WebSession) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.dumps({"u": session.user, "c": session.csrf, "s": session.session_id}),
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
