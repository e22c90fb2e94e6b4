"""`inspector review serve` and `inspector users add|list|passwd|disable|token|tokens|sessions`."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspector.safetext import terminal

console = Console()
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
Name = Annotated[str, typer.Argument(help="User name (a-z, 0-9, . _ -).")]


def review_serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default: review.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: review.port).")
    ] = None,
) -> None:
    """Serve the review web app and its /api/v1 (until Ctrl-C or SIGTERM)."""
    import gc

    import uvicorn

    from inspector.context import settings_from
    from inspector.review import create_app
    from inspector.store import Store

    settings = settings_from(ctx)
    if host is not None:  # the Host names the app answers to include its bind address
        review = settings.review.model_copy(update={"host": host})
        settings = settings.model_copy(update={"review": review})
    store = Store.from_settings(settings.store)
    store.upgrade()
    app = create_app(settings, store)
    # Everything loaded so far lives as long as the server: moving it out of the collector's
    # reach keeps full collections (pauses of 60-300 ms at 100,000 rows) off the answers.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            app,
            host=host or settings.review.host,
            port=port or settings.review.port,
            proxy_headers=False,
            server_header=False,
        )
    finally:
        store.close()


def _name(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise typer.BadParameter(
            "use 1-64 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            param_hint="NAME",
        )
    return username


def _read_password(from_stdin: bool) -> str:
    from inspector.review.passwords import check_password_rules

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_password_rules(password)
    return password


StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]


def users_add(
    ctx: typer.Context,
    username: Name,
    role: Annotated[str, typer.Option(help="viewer, reviewer or admin.")] = "reviewer",
    password_stdin: StdinOpt = False,
) -> None:
    """Create a review-app user."""
    from inspector.context import open_store
    from inspector.review.passwords import hash_password
    from inspector.store import users

    if role not in users.ROLES:
        raise typer.BadParameter(f"choose one of {', '.join(users.ROLES)}", param_hint="--role")
    hashed = hash_password(_read_password(password_stdin))
    with open_store(ctx) as store, store.db.write() as session:
        users.add_user(session, _name(username), hashed, role)
    console.print(f"[green]user {username} added[/] (role {role})")


def users_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List users and their API tokens (never the tokens themselves)."""
    from inspector.context import open_store, print_json_lines
    from inspector.store import users

    with open_store(ctx) as store, store.db.read() as session:
        people = users.list_users(session)
        tokens = users.list_tokens(session)
    rows = [
        (
            user,
            "disabled" if user.disabled else "active",
            [t for t in tokens if t.username == user.username and not t.revoked],
        )
        for user in people
    ]
    if as_json:
        print_json_lines(
            {
                "user": user.username,
                "role": user.role,
                "state": state,
                "created_at": user.created_at.isoformat(),
                "tokens": [t.name for t in own],
            }
            for user, state, own in rows
        )
        return
    table = Table("user", "role", "state", "created", "tokens")
    for user, state, own in rows:
        table.add_row(
            terminal(user.username),
            user.role,
            state,
            user.created_at.strftime("%Y-%m-%d"),
            ", ".join(terminal(f"{t.name} ({t.prefix}…)") for t in own),
        )
    console.print(table)


def users_passwd(
    ctx: typer.Context,
    username: Name,
    password_stdin: StdinOpt = False,
    revoke_tokens: Annotated[
        bool, typer.Option("--revoke-tokens", help="Also revoke every API token of the user.")
    ] = False,
) -> None:
    """Set a new password; the user's browser sessions end (and, if asked, their tokens)."""
    from inspector.context import open_store
    from inspector.review.passwords import hash_password
    from inspector.store import users

    hashed = hash_password(_read_password(password_stdin))
    with open_store(ctx) as store, store.db.write() as session:
        users.set_password(session, _name(username), hashed, revoke_tokens=revoke_tokens)
    ended = "their sessions were ended" + (" and tokens revoked" if revoke_tokens else "")
    console.print(f"[green]password of {username} changed[/]; {ended}")


def users_disable(
    ctx: typer.Context,
    username: Name,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again.")] = False,
) -> None:
    """Disable a user: sessions end, API tokens are revoked, logins are refused."""
    from inspector.context import open_store
    from inspector.store import users

    with open_store(ctx) as store, store.db.write() as session:
        users.set_disabled(session, _name(username), not enable)
    console.print(f"user {username} {'enabled' if enable else 'disabled'}")


def users_token(
    ctx: typer.Context,
    username: Name,
    name: Annotated[str, typer.Option(help="What the token is for (unique per user).")] = "script",
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Days until it expires (default review.token_days)."),
    ] = None,
) -> None:
    """Create an API token for scripts; it is printed once and stored only as a hash."""
    from datetime import timedelta

    from inspector.context import open_store, settings_from
    from inspector.review.passwords import digest, new_api_token
    from inspector.store import users

    if not USERNAME.fullmatch(name):
        raise typer.BadParameter("use a-z, 0-9, '.', '_' or '-'", param_hint="--name")
    review = settings_from(ctx).review
    life = days if days is not None else review.token_days
    if life > review.token_max_days:
        raise typer.BadParameter(
            f"at most review.token_max_days = {review.token_max_days}", param_hint="--days"
        )
    token = new_api_token()
    with open_store(ctx) as store, store.db.write() as session:
        expires = users.add_token(
            session, _name(username), name, digest(token), token[:12], timedelta(days=life)
        )
    console.print(
        f"API token {terminal(name)} for {username}, expires {expires:%Y-%m-%d %H:%M} UTC "
        "(shown once, keep it secret):"
    )
    sys.stdout.write(token + "\n")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "never"


def tokens_list(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List API tokens: name, owner, state, expiry and last use (never the token)."""
    from inspector.context import open_store
    from inspector.store import users

    with open_store(ctx) as store, store.db.read() as session:
        tokens = users.list_tokens(session, _name(username) if username else None)
    if as_json:
        for t in tokens:
            record = {
                "user": t.username,
                "name": t.name,
                "prefix": t.prefix,
                "state": t.state,
                "created_at": t.created_at.isoformat(),
                "expires_at": t.expires_at.isoformat(),
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            }
            sys.stdout.write(json.dumps(record) + "\n")
        return
    table = Table("user", "name", "prefix", "state", "created", "expires", "last used")
    for t in tokens:
        table.add_row(
            terminal(t.username),
            terminal(t.name),
            terminal(t.prefix) + "…",
            t.state,
            _when(t.created_at),
            _when(t.expires_at),
            _when(t.last_used_at),
        )
    console.print(table)


def tokens_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
    user: Annotated[str | None, typer.Option(help="The token's owner.")] = None,
) -> None:
    """Revoke an API token by name; scripts using it get 401 from then on."""
    from inspector.context import open_store
    from inspector.store import users

    with open_store(ctx) as store, store.db.write() as session:
        n = users.revoke_token(session, name, _name(user) if user else None)
    console.print(f"revoked {n} token(s) named {terminal(name)}")


def sessions_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List live browser sessions: handle, user, address, since and until."""
    from inspector.context import open_store
    from inspector.store import users

    with open_store(ctx) as store, store.db.read() as session:
        rows = users.list_sessions(session)
    if as_json:
        for r in rows:
            record = {
                "handle": r.handle,
                "user": r.username,
                "address": r.address,
                "created_at": r.created_at.isoformat(),
                "expires_at": r.expires_at.isoformat(),
            }
            sys.stdout.write(json.dumps(record) + "\n")
        return
    table = Table("handle", "user", "address", "since", "until")
    for r in rows:
        table.add_row(
            r.handle,
            terminal(r.username),
            terminal(r.address or "-"),
            _when(r.created_at),
            _when(r.expires_at),
        )
    console.print(table)


def sessions_end(
    ctx: typer.Context,
    handle: Annotated[str | None, typer.Argument(help="A handle from `sessions list`.")] = None,
    user: Annotated[str | None, typer.Option(help="End every session of this user.")] = None,
) -> None:
    """End one browser session, or all of a user's; they must log in again."""
    from inspector.context import open_store
    from inspector.store import users

    if (handle is None) == (user is None):
        raise typer.BadParameter("give a HANDLE or --user, not both", param_hint="HANDLE")
    with open_store(ctx) as store, store.db.write() as session:
        n = users.end_sessions(session, handle, _name(user) if user else None)
    console.print(f"ended {n} session(s)")


review_app = typer.Typer(help="The review web app.", no_args_is_help=True)
review_app.command("serve")(review_serve)
users_app = typer.Typer(help="Review-app users and API tokens.", no_args_is_help=True)
users_app.command("add")(users_add)
users_app.command("list")(users_list)
users_app.command("passwd")(users_passwd)
users_app.command("disable")(users_disable)
users_app.command("token")(users_token)
tokens_app = typer.Typer(help="API tokens: list and revoke.", no_args_is_help=True)
tokens_app.command("list")(tokens_list)
tokens_app.command("revoke")(tokens_revoke)
users_app.add_typer(tokens_app, name="tokens")
sessions_app = typer.Typer(help="Browser sessions: list and end.", no_args_is_help=True)
sessions_app.command("list")(sessions_list)
sessions_app.command("end")(sessions_end)
users_app.add_typer(sessions_app, name="sessions")
