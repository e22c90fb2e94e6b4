"""Who is calling: session cookies for browsers, bearer tokens for scripts, roles, CSRF.

A browser session is a random token in an HttpOnly SameSite=Strict cookie; the server keeps
its sha256. The session's CSRF token, which every form and every state-changing API call
made with the cookie must echo, is derived from the cookie (an HMAC of it) and kept only as
a sha256 too, so the database holds nothing a browser could replay. A bearer token carries
no ambient authority, so it needs no CSRF token; it expires and its last use is noted.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, HTTPException, Request, Response

from inspector.review.context import AppContext, app_context
from inspector.review.passwords import digest
from inspector.store import users as user_store
from inspector.store.users import UserRecord

SESSION_COOKIE = "inspector_session"
LOGIN_CSRF_COOKIE = "inspector_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
RANK = {"viewer": 0, "reviewer": 1, "admin": 2}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user: UserRecord
    via: Literal["session", "token"]
    csrf: str | None  # the session's CSRF token; None for bearer tokens
    session_hash: str | None = None

    @property
    def can_review(self) -> bool:
        """Reviewers and admins may review and mark; viewers only read."""
        return RANK[self.user.role] >= RANK["reviewer"]


class LoginRequired(Exception):
    """A page was asked for without a session; the handler redirects to the login page."""


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: an HMAC of its cookie, so it is never stored in clear."""
    return hmac.new(session_token.encode(), b"inspector csrf", hashlib.sha256).hexdigest()


def identify(request: Request, ctx: AppContext) -> Principal | None:
    """The caller named by a bearer token or the session cookie, if valid."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization", "")
    found: Principal | None = None
    if header.lower().startswith("bearer "):
        hashed = digest(header[7:].strip())
        with ctx.store.db.read() as session:
            hit = user_store.user_for_token(session, hashed)
        if hit is not None:
            if hit[1]:
                with ctx.store.db.write() as session:
                    user_store.note_token_use(session, hashed)
            found = Principal(hit[0], "token", None)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        hashed = digest(cookie)
        with ctx.store.db.read() as session:
            seen = user_store.session_user(session, hashed)
        csrf = csrf_for(cookie)
        if seen is not None and hmac.compare_digest(digest(csrf), seen[1]):
            found = Principal(seen[0], "session", csrf, hashed)
    request.state.principal = found
    return found


def api_user(request: Request, ctx: AppContext = Depends(app_context)) -> Principal:
    """The API caller, or 401."""
    who = identify(request, ctx)
    if who is None:
        raise HTTPException(
            401, "log in or send an API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


def page_user(request: Request, ctx: AppContext = Depends(app_context)) -> Principal:
    """The page visitor, or a redirect to the login page."""
    who = identify(request, ctx)
    if who is None or who.via != "session":
        raise LoginRequired()
    return who


def csrf_matches(who: Principal, sent: str | None) -> bool:
    """True when a cookie-authenticated request carries its session's CSRF token."""
    if who.via == "token":
        return True
    return bool(sent) and who.csrf is not None and hmac.compare_digest(who.csrf, sent or "")


def api_writer(request: Request, who: Principal = Depends(api_user)) -> Principal:
    """An API caller allowed to change review state: reviewer role, CSRF header with a cookie."""
    if not csrf_matches(who, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    if not who.can_review:
        raise HTTPException(403, f"role {who.user.role} may not review")
    return who


def set_session_cookie(response: Response, token: str, max_age: int, secure: bool) -> None:
    """Hand the browser its session cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
