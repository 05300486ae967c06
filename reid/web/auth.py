"""Reviewer accounts, sessions and CSRF tokens.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).
A session is a random cookie whose sha256 is stored with the user, an expiry and the session's
CSRF token; cookies are HttpOnly and SameSite=Strict. Forms shown to visitors who are not
logged in (submission, login) carry a signed double-submit token instead: a random cookie and a
form field that must equal it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from reid.errors import ReIDError
from reid.web.db import WebDB

ROLES = ("reviewer", "admin")
SESSION_COOKIE = "reid_session"
CSRF_COOKIE = "reid_csrf"
SESSION_HOURS = 12
_HASHER = PasswordHasher()
# verifying against this when the user does not exist costs the same time as a real check,
# so response times do not tell which reviewer names exist
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


def add_user(db: WebDB, name: str, password: str, role: str = "reviewer") -> None:
    """Create (or reset the password and role of) a reviewer account."""
    if role not in ROLES:
        raise ReIDError(f"Role {role!r} is not one of {', '.join(ROLES)}.")
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise ReIDError(f"User name {name!r} is not allowed: use 1-64 letters, digits, '-' or '_'.")
    if len(password) < 10:
        raise ReIDError("The password is too short: use at least 10 characters.")
    db.add_user(name, _HASHER.hash(password), role)
    with db.transaction() as conn:  # a reset password ends every session opened with the old
        conn.execute("DELETE FROM sessions WHERE user = ?", (name,))


def check_password(db: WebDB, name: str, password: str) -> dict[str, Any] | None:
    """The user row when ``password`` is theirs, else None."""
    user = db.user(name)
    try:
        _HASHER.verify(user["password_hash"] if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


class LoginThrottle:
    """At most ``limit`` login attempts per key in ``window_s`` until one succeeds, so
    passwords cannot be guessed at speed. Keys are (name, address) and the address alone, so a
    stranger's wrong guesses never lock a reviewer out from their own computer. An attempt is
    counted before the password is checked (parallel guesses cannot slip through) and the
    count is cleared by a success. In memory: a restart forgets."""

    def __init__(self, limit: int = 5, window_s: float = 900.0, per_address: int = 20) -> None:
        self.limit, self.window_s, self.per_address = limit, window_s, per_address
        self._attempts: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, name: str, address: str) -> bool:
        """Count one attempt; False when the limit is reached (refuse without checking)."""
        now = time.monotonic()
        keys = ((f"{name}\x1f{address}", self.limit), (f"\x1f{address}", self.per_address))
        with self._lock:
            recent = {}
            for key, _ in keys:
                recent[key] = [t for t in self._attempts.get(key, []) if now - t < self.window_s]
                self._attempts[key] = recent[key]
            if any(len(recent[key]) >= limit for key, limit in keys):
                return False
            for key, _ in keys:
                recent[key].append(now)
            return True

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._attempts.pop(f"{name}\x1f{address}", None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(db: WebDB, user: str) -> str:
    """A new session for ``user``; returns the cookie value."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    expires = now + timedelta(hours=SESSION_HOURS)
    with db.transaction() as conn:
        conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),))
        conn.execute(
            "INSERT INTO sessions(token_hash, user, csrf, expires_at) VALUES (?, ?, ?, ?)",
            (_digest(token), user, secrets.token_urlsafe(32), expires.isoformat()),
        )
    return token


def session_of(db: WebDB, token: str | None) -> dict[str, Any] | None:
    """{user, role, csrf} of a live session cookie, else None."""
    if not token:
        return None
    rows = db.query(
        "SELECT s.user, s.csrf, s.expires_at, u.role FROM sessions s "
        "JOIN users u ON u.name = s.user WHERE s.token_hash = ?",
        (_digest(token),),
    )
    if not rows or datetime.fromisoformat(rows[0]["expires_at"]) < datetime.now(timezone.utc):
        return None
    return rows[0]


def close_session(db: WebDB, token: str | None) -> None:
    if token:
        with db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))


def anonymous_token(secret: bytes, cookie: str | None) -> tuple[str, str]:
    """(cookie, form token) for a visitor without a session: the form token is the cookie's
    HMAC under the app's secret, so a page on another site can neither read nor forge it."""
    cookie = cookie if cookie and len(cookie) <= 64 else secrets.token_urlsafe(24)
    return cookie, hmac.new(secret, cookie.encode(), hashlib.sha256).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


__all__ = [
    "CSRF_COOKIE",
    "LoginThrottle",
    "ROLES",
    "SESSION_COOKIE",
    "add_user",
    "anonymous_token",
    "check_password",
    "close_session",
    "open_session",
    "session_of",
    "tokens_equal",
]
