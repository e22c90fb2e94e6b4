"""Password hashing (argon2id) and random secrets for sessions, CSRF and API tokens."""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from inspector.errors import InvalidInput

MIN_PASSWORD = 10
TOKEN_PREFIX = "insp_"

# argon2id with the library's defaults (RFC 9106's second recommended profile, 64 MiB).
DEFAULT_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verifying against this keeps the time of an unknown user name equal to a wrong password.
    return DEFAULT_HASHER.hash("not a password of anyone")


def check_password_rules(password: str) -> None:
    """Refuse passwords too short to resist guessing."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """An argon2id hash of a password that passes the rules; the hash records its cost."""
    check_password_rules(password)
    return hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; takes as long when there is no user (`stored_hash` None)."""
    try:
        return DEFAULT_HASHER.verify(stored_hash or _dummy_hash(), password) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    """A random URL-safe secret (256 bits) for a session cookie or CSRF token."""
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    """A new API token; recognisable by its prefix in logs and secret scanners."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What is stored for a session or token: its sha256 (they are random, no salt needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()
