"""`inspector review serve` and `inspector users add|list|passwd|disable|token`."""

from __future__ import annotations

import re
import sys
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
    import uvicorn

    from inspector.context import settings_from
    from inspector.review import create_app
    from inspector.store import Store

    settings = settings_from(ctx)
    store = Store.from_settings(settings.store)
    store.upgrade()
    app = create_app(settings, store)
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


def users_list(ctx: typer.Context) -> None:
    """List users and their API tokens (never the tokens themselves)."""
    from inspector.context import open_store
    from inspector.store import users

    with open_store(ctx) as store, store.db.read() as session:
        people = users.list_users(session)
        tokens = users.list_tokens(session)
    table = Table("user", "role", "state", "created", "tokens")
    for user in people:
        own = [t for t in tokens if t.username == user.username and not t.revoked]
        table.add_row(
            terminal(user.username),
            user.role,
            "disabled" if user.disabled else "active",
            user.created_at.strftime("%Y-%m-%d"),
            ", ".join(terminal(f"{t.name} ({t.prefix}…)") for t in own),
        )
    console.print(table)


def users_passwd(ctx: typer.Context, username: Name, password_stdin: StdinOpt = False) -> None:
    """Set a new password; the user's browser sessions end."""
    from inspector.context import open_store
    from inspector.review.passwords import hash_password
    from inspector.store import users

    hashed = hash_password(_read_password(password_stdin))
    with open_store(ctx) as store, store.db.write() as session:
        users.set_password(session, _name(username), hashed)
    console.print(f"[green]password of {username} changed[/]; their sessions were ended")


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
    name: Annotated[str, typer.Option(help="What the token is for.")] = "script",
) -> None:
    """Create an API token for scripts; it is printed once and stored only as a hash."""
    from inspector.context import open_store
    from inspector.review.passwords import digest, new_api_token
    from inspector.store import users

    if not USERNAME.fullmatch(name):
        raise typer.BadParameter("use a-z, 0-9, '.', '_' or '-'", param_hint="--name")
    token = new_api_token()
    with open_store(ctx) as store, store.db.write() as session:
        users.add_token(session, _name(username), name, digest(token), token[:12])
    console.print(f"API token {terminal(name)} for {username} (shown once, keep it secret):")
    sys.stdout.write(token + "\n")


review_app = typer.Typer(help="The review web app.", no_args_is_help=True)
review_app.command("serve")(review_serve)
users_app = typer.Typer(help="Review-app users and API tokens.", no_args_is_help=True)
users_app.command("add")(users_add)
users_app.command("list")(users_list)
users_app.command("passwd")(users_passwd)
users_app.command("disable")(users_disable)
users_app.command("token")(users_token)
