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

from inspector.errors import AlreadyExists, InvalidInput, NotFound
from inspector.store.models import ApiToken, LoginAddress, LoginFailure, User, WebSession

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
    expires_at: datetime
    last_used_at: datetime | None

    @property
    def state(self) -> str:
        """revoked, expired or active."""
        if self.revoked:
            return "revoked"
        return "expired" if self.expires_at <= datetime.now(UTC) else "active"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A browser session as an admin sees it: a short handle, never the cookie."""

    handle: str
    username: str
    created_at: datetime
    expires_at: datetime
    address: str | None


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


def set_password(
    session: Session, username: str, password_hash: str, revoke_tokens: bool = False
) -> None:
    """Replace a user's password hash, end every session they have and, if asked, revoke
    their API tokens."""
    row = _user_row(session, username)
    row.password_hash = password_hash
    row.password_changed_at = datetime.now(UTC)
    session.execute(sa.delete(WebSession).where(WebSession.user_id == row.id))
    if revoke_tokens:
        _revoke(session, ApiToken.user_id == row.id)


def _revoke(session: Session, which: sa.ColumnElement[bool]) -> int:
    result = session.execute(
        sa.update(ApiToken)
        .where(which, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def set_disabled(session: Session, username: str, disabled: bool = True) -> None:
    """Disable (or enable) a user; disabling ends their sessions and revokes their tokens."""
    row = _user_row(session, username)
    row.disabled = disabled
    if disabled:
        session.execute(sa.delete(WebSession).where(WebSession.user_id == row.id))
        _revoke(session, ApiToken.user_id == row.id)


def add_token(
    session: Session,
    username: str,
    name: str,
    token_hash: str,
    prefix: str,
    lifetime: timedelta = timedelta(days=90),
) -> datetime:
    """Store the hash of a new API token for a user; return when it expires.

    A user's live tokens have distinct names (revocation is by name).
    """
    row = _user_row(session, username)
    now = datetime.now(UTC)
    taken = session.scalar(
        sa.select(ApiToken.id).where(
            ApiToken.user_id == row.id,
            ApiToken.name == name,
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > now,
        )
    )
    if taken is not None:
        raise AlreadyExists(f"user {username!r} already has a live token named {name!r}")
    expires = now + lifetime
    session.add(
        ApiToken(
            user_id=row.id,
            name=name,
            token_hash=token_hash,
            prefix=prefix,
            created_at=now,
            expires_at=expires,
        )
    )
    session.flush()
    return expires


def list_tokens(session: Session, username: str | None = None) -> list[TokenRecord]:
    """Every API token (not the secret), by user and creation; one user's when named."""
    stmt = sa.select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if username is not None:
        stmt = stmt.where(User.username == username)
    rows = session.execute(stmt.order_by(User.username, ApiToken.id))
    return [
        TokenRecord(
            t.id,
            name,
            t.name,
            t.prefix,
            t.created_at,
            t.revoked_at is not None,
            t.expires_at,
            t.last_used_at,
        )
        for t, name in rows
    ]


def revoke_token(session: Session, name: str, username: str | None = None) -> int:
    """Revoke the live tokens with this name (of one user when named); return how many.

    NotFound when none matches; InvalidInput when the name is several users' and no user
    was named.
    """
    stmt = (
        sa.select(ApiToken.id, User.username)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    )
    if username is not None:
        stmt = stmt.where(User.username == username)
    found = session.execute(stmt).all()
    if not found:
        raise NotFound(f"no unrevoked token named {name!r}")
    owners = sorted({owner for _, owner in found})
    if len(owners) > 1:
        raise InvalidInput(
            f"tokens named {name!r} belong to {', '.join(owners)}: name the user with --user"
        )
    return _revoke(session, ApiToken.id.in_([tid for tid, _ in found]))


# Last use is written at most this often per token, not on every request.
LAST_USE_STEP = timedelta(minutes=1)


def user_for_token(session: Session, token_hash: str) -> tuple[UserRecord, bool] | None:
    """The enabled user owning an unrevoked, unexpired token with this hash, and whether its
    last use is due to be noted (note_token_use)."""
    now = datetime.now(UTC)
    found = session.execute(
        sa.select(User, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(
            ApiToken.token_hash == token_hash,
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > now,
            User.disabled.is_(False),
        )
    ).first()
    if found is None:
        return None
    user, last = found
    return _record(user), last is None or last < now - LAST_USE_STEP


def note_token_use(session: Session, token_hash: str) -> None:
    """Record that a token was used now."""
    session.execute(
        sa.update(ApiToken)
        .where(ApiToken.token_hash == token_hash)
        .values(last_used_at=datetime.now(UTC))
    )


def create_session(
    session: Session,
    user_id: int,
    token_hash: str,
    csrf_hash: str,
    lifetime: timedelta,
    address: str | None = None,
) -> None:
    """Record a new login; expired sessions are swept at the same time."""
    now = datetime.now(UTC)
    session.execute(sa.delete(WebSession).where(WebSession.expires_at < now))
    session.add(
        WebSession(
            token_hash=token_hash,
            user_id=user_id,
            csrf_hash=csrf_hash,
            created_at=now,
            expires_at=now + lifetime,
            address=address[:64] if address else None,
        )
    )
    session.flush()


def session_user(session: Session, token_hash: str) -> tuple[UserRecord, str] | None:
    """The enabled user and CSRF token hash of an unexpired session with this hash."""
    found = session.execute(
        sa.select(User, WebSession.csrf_hash)
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


HANDLE_LENGTH = 16


def list_sessions(session: Session) -> list[SessionRecord]:
    """Unexpired browser sessions, newest first; each named by a handle (its hash's start)."""
    rows = session.execute(
        sa.select(WebSession, User.username)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.expires_at > datetime.now(UTC))
        .order_by(WebSession.created_at.desc())
    )
    return [
        SessionRecord(w.token_hash[:HANDLE_LENGTH], name, w.created_at, w.expires_at, w.address)
        for w, name in rows
    ]


def end_sessions(session: Session, handle: str | None = None, username: str | None = None) -> int:
    """End one session by its handle, or every session of a user; return how many ended."""
    if handle is not None:
        if len(handle) != HANDLE_LENGTH or any(c not in "0123456789abcdef" for c in handle):
            raise NotFound(f"no session {handle[:20]!r}")
        which = WebSession.token_hash.startswith(handle)
    elif username is not None:
        which = WebSession.user_id == _user_row(session, username).id
    else:
        raise ValueError("name a session handle or a user")
    result = session.execute(sa.delete(WebSession).where(which))
    ended = int(getattr(result, "rowcount", 0) or 0)
    if handle is not None and ended == 0:
        raise NotFound(f"no session {handle}")
    return ended


def is_known_address(session: Session, user_id: int, address: str) -> bool:
    """Whether this user has logged in from this address."""
    return session.get(LoginAddress, {"user_id": user_id, "address": address[:64]}) is not None


def remember_address(session: Session, user_id: int, address: str) -> None:
    """Note a successful login from this address."""
    row = session.get(LoginAddress, {"user_id": user_id, "address": address[:64]})
    now = datetime.now(UTC)
    if row is None:
        session.add(LoginAddress(user_id=user_id, address=address[:64], last_login_at=now))
    else:
        row.last_login_at = now
    session.flush()


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
    session: Session,
    address_key: str,
    account_key: str | None,
    max_failures: int,
    lockout: timedelta,
    backoff_max: timedelta,
) -> None:
    """Count a failed login against its address and (from an unknown address) its account.

    The address: `max_failures` failures within `lockout` lock it for `lockout`. The account:
    from its `max_failures`-th failure on, unknown addresses wait 1 s, 2 s, 4 s … up to
    `backoff_max`; a failure older than `lockout` starts the count again.
    """
    now = datetime.now(UTC)
    row = _failure_row(session, address_key, now, lockout)
    row.failures += 1
    if row.failures >= max_failures:
        row.locked_until = now + lockout
        row.failures = 0
        row.first_failed_at = now
    if account_key is not None:
        account = _failure_row(session, account_key, now, lockout)
        account.failures += 1
        account.first_failed_at = now  # for an account: the latest failure
        over = account.failures - max_failures
        if over >= 0:
            wait = min(backoff_max.total_seconds(), 2.0 ** min(over, 30))
            account.locked_until = now + timedelta(seconds=wait)
    session.flush()


def _failure_row(session: Session, key: str, now: datetime, window: timedelta) -> LoginFailure:
    row = session.get(LoginFailure, key)
    stale = row is not None and row.first_failed_at < now - window
    if row is not None and stale and (row.locked_until is None or row.locked_until < now):
        session.delete(row)
        session.flush()
        row = None
    if row is None:
        row = LoginFailure(key=key, failures=0, first_failed_at=now, locked_until=None)
        session.add(row)
    return row


def clear_login_failures(session: Session, keys: Sequence[str]) -> None:
    """Forget failures after a successful login."""
    session.execute(sa.delete(LoginFailure).where(LoginFailure.key.in_(keys)))
