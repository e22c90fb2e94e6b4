"""Who am I, and the service's health (the one API path without a login)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from inspector.review.api.defs import UserOut
from inspector.review.auth import Principal, api_user

router = APIRouter(tags=["session"])


@router.get("/me", response_model=UserOut)
def me(who: Principal = Depends(api_user)) -> UserOut:
    """The logged-in user or the API token's owner."""
    return UserOut(username=who.user.username, role=who.user.role)
