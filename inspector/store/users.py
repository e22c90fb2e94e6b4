"""Review-app accounts: users, hashed API tokens, server-side sessions and login throttling.

Password hashing happens outside the store (the caller hands in the hash); tokens and session
cookies are random, so a plain sha256 of them is what is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.errors import AlreadyExists, NotFound
from inspector.store.models import ApiToken, LoginFailure, User, WebSession

ROLES = ("viewer", "reviewer", "admin")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as the app sees it."""

    id: int
    username: str
    role: str
    disabled: bool
    password_hash: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as listed: never the token itself."""

    id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    revoked: bool


def _record(row: User) -> UserRecord:
    return UserRecord(
        row.id, row.username, row.role, row.disabled, row.password_hash, row.created_at
    )


def add_user(session: Session, username: str, password_hash: str, role: str) -> UserRecord:
    """Create a user; refuses a name already taken."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise AlreadyExists(f"user {username!r} already exists")
    now = datetime.now(UTC)
    row = User(
        username=username,
        password_hash=password_hash,
        role=role,
        disabled=False,
        created_at=now,
        password_changed_at=now,
    )
    session.add(row)
    session.flush()
    return _record(row)


def get_user(session: Session, username: str) -> UserRecord | None:
    """The user with this name, if any."""
    row = session.scalar(sa.select(User).where(User.username == username))
    return _record(row) if row is not None else None


def list_users(session: Session) -> list[UserRecord]:
    """Every user, by name."""
    return [_record(r) for r in session.scalars(sa.select(User).order_by(User.username))]


def _user_row(session: Session, username: str) -> User:
    row = session.scalar(sa.select(User).where(User.username == username))
    if row is None:
        raise NotFound(f"no user {username!r}")
    return row


def set_password(session: Session, username: str, password_hash: str) -> None:
    """Replace a user's password hash and end every session they have."""
    row = _user_row(session, username)
    row.password_hash = password_hash
    row.password_changed_at = datetime.now(UTC)
    session.execute(sa.delete(WebSession).where(WebSession.user_id == row.id))


def set_disabled(session: Session, username: str, disabled: bool = True) -> None:
    """Disable (or enable) a user; disabling ends their sessions and revokes their tokens."""
    row = _user_row(session, username)
    row.disabled = disabled
    if disabled:
        session.execute(sa.delete(WebSession).where(WebSession.user_id == row.id))
        session.execute(
            sa.update(ApiToken)
            .where(ApiToken.user_id == row.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )


def add_token(session: Session, username: str, name: str, token_hash: str, prefix: str) -> None:
    """Store the hash of a new API token for a user."""
    row = _user_row(session, username)
    session.add(
        ApiToken(
            user_id=row.id,
            name=name,
            token_hash=token_hash,
            prefix=prefix,
            created_at=datetime.now(UTC),
        )
    )
    session.flush()


def list_tokens(session: Session) -> list[TokenRecord]:
    """Every API token (not the secret), by user and creation."""
    rows = session.execute(
        sa.select(ApiToken, User.username)
        .join(User, User.id == ApiToken.user_id)
        .order_by(User.username, ApiToken.id)
    )
    return [
        TokenRecord(t.id, name, t.name, t.prefix, t.created_at, t.revoked_at is not None)
        for t, name in rows
    ]


def user_for_token(session: Session, token_hash: str) -> UserRecord | None:
    """The enabled user owning an unrevoked token with this hash."""
    row = session.scalar(
        sa.select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(
            ApiToken.token_hash == token_hash,
            ApiToken.revoked_at.is_(None),
            User.disabled.is_(False),
        )
    )
    return _record(row) if row is not None else None


def create_session(
    session: Session, user_id: int, token_hash: str, csrf_token: str, lifetime: timedelta
) -> None:
    """Record a new login; expired sessions are swept at the same time."""
    now = datetime.now(UTC)
    session.execute(sa.delete(WebSession).where(WebSession.expires_at < now))
    session.add(
        WebSession(
            token_hash=token_hash,
            user_id=user_id,
            csrf_token=csrf_token,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()


def session_user(session: Session, token_hash: str) -> tuple[UserRecord, str] | None:
    """The enabled user and CSRF token of an unexpired session with this hash."""
    found = session.execute(
        sa.select(User, WebSession.csrf_token)
        .join(WebSession, WebSession.user_id == User.id)
        .where(
            WebSession.token_hash == token_hash,
            WebSession.expires_at > datetime.now(UTC),
            User.disabled.is_(False),
        )
    ).first()
    if found is None:
        return None
    return _record(found[0]), found[1]


def end_session(session: Session, token_hash: str) -> None:
    """Log a session out."""
    session.execute(sa.delete(WebSession).where(WebSession.token_hash == token_hash))


def locked_until(session: Session, keys: Sequence[str]) -> datetime | None:
    """When the latest lockout among these throttle keys ends, if any is still locked."""
    now = datetime.now(UTC)
    ends = [
        t
        for t in session.scalars(
            sa.select(LoginFailure.locked_until).where(
                LoginFailure.key.in_(keys), LoginFailure.locked_until.is_not(None)
            )
        )
        if t is not None
    ]
    latest = max(ends, default=None)
    return latest if latest is not None and latest > now else None


def record_login_failure(
    session: Session, keys: Sequence[str], max_failures: int, lockout: timedelta
) -> None:
    """Count a failed login against each key; `max_failures` within `lockout` locks the key."""
    now = datetime.now(UTC)
    for key in keys:
        row = session.get(LoginFailure, key)
        if row is None or row.first_failed_at < now - lockout:
            if row is not None:
                session.delete(row)
                session.flush()
            row = LoginFailure(key=key, failures=0, first_failed_at=now, locked_until=None)
            session.add(row)
        row.failures += 1
        if row.failures >= max_failures:
            row.locked_until = now + lockout
            row.failures = 0
            row.first_failed_at = now
    session.flush()


def clear_login_failures(session: Session, keys: Sequence[str]) -> None:
    """Forget failures after a successful login."""
    session.execute(sa.delete(LoginFailure).where(LoginFailure.key.in_(keys)))
