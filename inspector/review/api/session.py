"""Who am I; and for admins, the live browser sessions, which they can end."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from inspector.review.api.defs import UserOut
from inspector.review.auth import CSRF_HEADER, Principal, api_user, csrf_matches
from inspector.review.context import AppContext, app_context
from inspector.store import users as user_store

router = APIRouter(tags=["session"])


class SessionOut(BaseModel):
    handle: str
    username: str
    address: str | None
    created_at: datetime
    expires_at: datetime


@router.get("/me", response_model=UserOut)
def me(who: Principal = Depends(api_user)) -> UserOut:
    """The logged-in user or the API token's owner."""
    return UserOut(username=who.user.username, role=who.user.role)


def _admin(who: Principal) -> None:
    if who.user.role != "admin":
        raise HTTPException(403, "only admins see and end sessions")


@router.get("/sessions", response_model=list[SessionOut])
def sessions(
    who: Principal = Depends(api_user), ctx: AppContext = Depends(app_context)
) -> list[SessionOut]:
    """Every live browser session (admins only), newest first."""
    _admin(who)
    with ctx.store.db.read() as session:
        rows = user_store.list_sessions(session)
    return [SessionOut.model_validate(r, from_attributes=True) for r in rows]


@router.delete("/sessions/{handle}", status_code=204)
def end_session(
    handle: str,
    request: Request,
    who: Principal = Depends(api_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """End a browser session by its handle (admins only); its browser must log in again."""
    if not csrf_matches(who, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    _admin(who)
    with ctx.store.db.write() as session:
        user_store.end_sessions(session, handle=handle)
    return Response(status_code=204)
