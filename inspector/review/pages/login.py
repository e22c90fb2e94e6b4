"""Login and logout, with throttling of repeated failures; and the health endpoint."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from inspector.errors import StoreUnavailable
from inspector.review.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    csrf_for,
    identify,
    page_user,
    set_session_cookie,
)
from inspector.review.context import AppContext, app_context
from inspector.review.edge import unstorable
from inspector.review.hosts import client_address
from inspector.review.pages import checked_form, render
from inspector.review.passwords import digest, new_secret, verify_password
from inspector.store import users as user_store

router = APIRouter(include_in_schema=False)


def _local(target: str | None) -> str:
    # Only same-site paths: "//host" and "/\\host" would leave the site.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/queue"


def _login_page(
    ctx: AppContext, next_url: str, error: str | None = None, status: int = 200
) -> Response:
    token = new_secret()
    response = render(
        ctx, "login.html", None, status=status, login_csrf=token, next_url=next_url, error=error
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.review.secure_cookies,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(
    request: Request, next: str | None = None, ctx: AppContext = Depends(app_context)
) -> Response:
    """The login page."""
    if identify(request, ctx) is not None:
        return RedirectResponse(_local(next), status_code=303)
    return _login_page(ctx, _local(next))


_FIELD_NAMES = {"username": "user name", "password": "password", "next": "next"}


def _throttle_keys(username: str, address: str) -> tuple[str, str]:
    return f"addr:{address}", f"user:{username}"


@router.post("/login")
async def login(request: Request, ctx: AppContext = Depends(app_context)) -> Response:
    """Check the password, throttled per address and per account (see the README's policy).

    An address with `max_login_failures` failures is locked for `lockout_minutes`. An
    account's failures from addresses it never logged in from make such addresses wait a
    back-off that doubles per failure up to `account_backoff_max_s`; addresses it logged in
    from are exempt, so nobody can keep its owner out by guessing its password.
    """
    form = await request.form()
    fields = {k: str(form.get(k, "")) for k in ("username", "password", "next")}
    for key, value in fields.items():
        if (problem := unstorable(value)) is not None:
            message = f"{_FIELD_NAMES[key]}: {problem}"
            return _login_page(ctx, "/queue", message, 422)
    username, password = fields["username"][:64], fields["password"][:1024]
    next_url = _local(fields["next"])
    sent, kept = str(form.get("login_csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not kept or not hmac.compare_digest(sent, kept):
        return _login_page(ctx, next_url, "The login form expired; please try again.", 403)
    review = ctx.settings.review
    address = client_address(request, ctx.trusted_proxies)
    address_key, account_key = _throttle_keys(username, address)
    with ctx.store.db.read() as session:
        user = user_store.get_user(session, username)
        known = user is not None and user_store.is_known_address(session, user.id, address)
        keys = [address_key] if known else [address_key, account_key]
        locked = user_store.locked_until(session, keys)
    if locked is not None:
        seconds = max(1, round((locked - datetime.now(UTC)).total_seconds()))
        wait = f"{seconds} second(s)" if seconds < 120 else f"{round(seconds / 60)} minute(s)"
        return _login_page(ctx, next_url, f"Too many failed logins. Try again in {wait}.", 429)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        with ctx.store.db.write() as session:
            user_store.record_login_failure(
                session,
                address_key,
                None if known else account_key,
                review.max_login_failures,
                timedelta(minutes=review.lockout_minutes),
                timedelta(seconds=review.account_backoff_max_s),
            )
        return _login_page(ctx, next_url, "Wrong user name or password.", 401)
    token = new_secret()
    lifetime = timedelta(hours=review.session_hours)
    with ctx.store.db.write() as session:
        user_store.clear_login_failures(session, [account_key])
        user_store.remember_address(session, user.id, address)
        user_store.create_session(
            session, user.id, digest(token), digest(csrf_for(token)), lifetime, address
        )
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, token, int(lifetime.total_seconds()), review.secure_cookies)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(
    request: Request,
    who: Principal = Depends(page_user),
    ctx: AppContext = Depends(app_context),
) -> Response:
    """End the session."""
    await checked_form(request, who)
    if who.session_hash:
        with ctx.store.db.write() as session:
            user_store.end_session(session, who.session_hash)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/healthz")
def health(ctx: AppContext = Depends(app_context)) -> Response:
    """200 while the database answers; needs no login."""
    try:
        ctx.store.db.ping()
    except StoreUnavailable as exc:
        raise HTTPException(503, exc.message) from exc
    return JSONResponse({"status": "ok"})


@router.get("/")
def home() -> Response:
    """The queue is the start page."""
    return RedirectResponse("/queue", status_code=303)
