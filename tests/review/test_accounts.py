"""Who is calling and for how long: real client addresses behind a proxy, a lockout nobody
can turn against an account's owner, API tokens that expire and are revoked by name, a
password change that ends sessions, hashed CSRF tokens, admins ending sessions, the Host.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from inspector.review import create_app
from inspector.review.passwords import digest, new_api_token
from inspector.settings import Settings
from inspector.store import Store
from inspector.store import users as user_store
from inspector.store.database import alembic_config
from inspector.store.models import LoginFailure
from tests.review.helpers import CHEAP, PASSWORD, SETTINGS, add_user, csrf_of, login, seed

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
PROXY = "10.0.0.5"


def _settings(**review: Any) -> Settings:
    data: dict[str, Any] = {**SETTINGS, "review": {**SETTINGS["review"], **review}}  # type: ignore[dict-item]
    return Settings.model_validate(data)


def _behind_proxy(store: Store) -> TestClient:
    """A client whose TCP peer is the trusted proxy; requests name clients in X-Forwarded-For."""
    app = create_app(_settings(trusted_proxies=["10.0.0.0/24"]), store)
    return TestClient(app, base_url="http://testserver", client=(PROXY, 40000))


def _login_from(client: TestClient, address: str, name: str, password: str) -> Any:
    hop = {"X-Forwarded-For": f"203.0.113.99, {address}"}  # the left entry is the client's own
    page = client.get("/login", headers=hop)
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/login",
        data={"username": name, "password": password, "login_csrf": token.group(1)},
        headers=hop,
        follow_redirects=False,
    )


def test_behind_a_trusted_proxy_one_address_is_locked_not_everyone(store: Store) -> None:
    add_user(store, "ana")
    add_user(store, "ben")
    with _behind_proxy(store) as client:
        for _ in range(3):  # max_login_failures = 3 from the attacker's address
            assert (
                _login_from(client, "198.51.100.7", "nobody", "wrong password").status_code == 401
            )
        assert _login_from(client, "198.51.100.7", "ben", PASSWORD).status_code == 429
        # Everyone else, behind the same proxy, still logs in.
        assert _login_from(client, "198.51.100.8", "ben", PASSWORD).status_code == 303
    with store.db.read() as session:
        keys = set(session.scalars(sa.text("SELECT key FROM login_failures")))
    assert "addr:198.51.100.7" in keys and f"addr:{PROXY}" not in keys


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(store: Store) -> None:
    add_user(store, "ana")
    app = create_app(_settings(), store)  # no trusted proxies
    with TestClient(app, base_url="http://testserver", client=("192.0.2.1", 1)) as client:
        for n in range(3):  # a different forged address each time: still one real address
            r = _login_from(client, f"198.51.100.{n}", "nobody", "wrong password")
            assert r.status_code == 401
        assert _login_from(client, "198.51.100.50", "ana", PASSWORD).status_code == 429


def test_an_attacker_cannot_keep_the_owner_out_of_a_named_account(store: Store) -> None:
    add_user(store, "ana")
    with _behind_proxy(store) as client:
        assert _login_from(client, "192.0.2.10", "ana", PASSWORD).status_code == 303  # her desk
        client.cookies.clear()
        for n in range(8):  # many attacker addresses, each under the per-address limit
            r = _login_from(client, f"198.51.100.{n % 4}", "ana", "wrong password")
            assert r.status_code in (401, 429)
        # From a new address the account asks for a short wait (the back-off) …
        r = _login_from(client, "198.51.100.200", "ana", PASSWORD)
        assert r.status_code == 429 and "second" in r.text
        # … but from where she logged in before, her password works at once.
        assert _login_from(client, "192.0.2.10", "ana", PASSWORD).status_code == 303
    with store.db.read() as session:
        row = session.execute(
            sa.text("SELECT failures FROM login_failures WHERE key = 'user:ana'")
        ).first()
    assert row is None  # her successful login cleared the account's count


def test_the_account_back_off_grows_and_is_capped_short(store: Store) -> None:
    now = datetime.now(UTC)
    waits = []
    with store.db.write() as session:
        for n in range(12):
            user_store.record_login_failure(
                session,
                f"addr:198.51.100.{n}",
                "user:ana",
                3,
                timedelta(minutes=15),
                timedelta(seconds=60),
            )
            row = session.get(LoginFailure, "user:ana")
            assert row is not None
            waits.append(round((row.locked_until - now).total_seconds()) if row.locked_until else 0)
    assert waits[:2] == [0, 0]
    assert waits[2] < waits[4] < waits[6]  # growing
    assert max(waits) <= 61  # never more than account_backoff_max_s


def test_api_tokens_expire_are_listed_and_revoked_by_name_and_note_their_last_use(
    client: TestClient, store: Store
) -> None:
    seed(store, ["REVIEW"])
    add_user(store, "bot")
    live, old = new_api_token(), new_api_token()
    with store.db.write() as session:
        user_store.add_token(session, "bot", "ci", digest(live), live[:12], timedelta(days=30))
        user_store.add_token(session, "bot", "old", digest(old), old[:12], timedelta(days=1))
        session.execute(
            sa.text("UPDATE api_tokens SET expires_at = :t WHERE name = 'old'"),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        )
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {live}"}).status_code == 200
    with store.db.read() as session:
        tokens = {t.name: t for t in user_store.list_tokens(session, "bot")}
    assert tokens["old"].state == "expired" and tokens["ci"].state == "active"
    assert tokens["ci"].last_used_at is not None and tokens["old"].last_used_at is None
    with store.db.write() as session:
        assert user_store.revoke_token(session, "ci") == 1
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {live}"}).status_code == 401


@SQLITE_ONLY
def test_a_password_change_ends_sessions_and_optionally_tokens(
    client: TestClient, store: Store
) -> None:
    add_user(store, "ana")
    login(client, "ana")
    token = new_api_token()
    with store.db.write() as session:
        user_store.add_token(session, "ana", "ci", digest(token), token[:12])
    bearer = {"Authorization": f"Bearer {token}"}
    with store.db.write() as session:
        user_store.set_password(session, "ana", CHEAP.hash(PASSWORD + "!"))
    assert client.get("/queue", follow_redirects=False).status_code == 303  # logged out
    assert client.get("/api/v1/me", headers=bearer).status_code == 200  # the token lives on
    with store.db.write() as session:
        user_store.set_password(session, "ana", CHEAP.hash(PASSWORD), revoke_tokens=True)
    assert client.get("/api/v1/me", headers=bearer).status_code == 401


@SQLITE_ONLY
def test_csrf_tokens_are_stored_hashed_and_admins_end_sessions(
    client: TestClient, store: Store
) -> None:
    add_user(store, "ana")
    add_user(store, "root", "admin")
    login(client, "ana")
    csrf = csrf_of(client)
    with store.db.read() as session:
        stored = list(session.scalars(sa.text("SELECT csrf_hash FROM web_sessions")))
    assert stored == [digest(csrf)] and csrf not in stored
    app = client.app
    with TestClient(app, base_url="http://testserver") as admin:
        login(admin, "root")
        assert client.get("/api/v1/sessions").status_code == 403  # not for reviewers
        listed = admin.get("/api/v1/sessions").json()
        ana = next(s for s in listed if s["username"] == "ana")
        headers = {"X-CSRF-Token": csrf_of(admin)}
        assert admin.delete(f"/api/v1/sessions/{ana['handle']}", headers=headers).status_code == 204
    assert client.get("/queue", follow_redirects=False).status_code == 303


@SQLITE_ONLY
def test_users_tokens_list_and_revoke_on_the_command_line(store: Store, tmp_path: Path) -> None:
    from inspector.cli import app as cli

    config = tmp_path / "inspector.toml"
    config.write_text(f'[store]\nurl = "{store.db.url}"\nblob_dir = "{tmp_path / "b"}"\n')
    add_user(store, "bot")
    runner = CliRunner()
    made = runner.invoke(cli, ["--config", str(config), "users", "token", "bot", "--name", "ci"])
    assert made.exit_code == 0, made.output
    too_long = runner.invoke(
        cli, ["--config", str(config), "users", "token", "bot", "--name", "x", "--days", "9999"]
    )
    assert too_long.exit_code != 0
    listed = runner.invoke(cli, ["--config", str(config), "users", "tokens", "list", "--json"])
    assert listed.exit_code == 0 and '"name": "ci"' in listed.output
    assert '"state": "active"' in listed.output
    revoked = runner.invoke(cli, ["--config", str(config), "users", "tokens", "revoke", "ci"])
    assert revoked.exit_code == 0, revoked.output
    listed = runner.invoke(cli, ["--config", str(config), "users", "tokens", "list", "--json"])
    assert '"state": "revoked"' in listed.output


@SQLITE_ONLY
def test_links_come_from_the_public_url_and_an_unexpected_host_is_refused(store: Store) -> None:
    (rid,) = seed(store, ["FAIL"])
    add_user(store, "ana")
    app = create_app(_settings(public_url="https://review.plant-a.example"), store)
    with TestClient(app, base_url="https://review.plant-a.example") as client:
        login(client, "ana")
        media = client.get(f"/api/v1/inspections/{rid}").json()["media"]
        assert media and all(
            m["url"].startswith("https://review.plant-a.example/media/") for m in media
        )
        export = client.get("/api/v1/export", params={"tab": "all", "format": "jsonl"})
        assert "https://review.plant-a.example/media/" in export.text
        evil = client.get(f"/api/v1/inspections/{rid}", headers={"Host": "evil.example"})
        assert evil.status_code == 400
        assert evil.headers["x-content-type-options"] == "nosniff"
        assert "evil.example" not in client.get("/api/v1/export", params={"tab": "all"}).text
    local = create_app(_settings(), store)  # no public URL: relative links, local names only
    with TestClient(local, base_url="http://localhost") as client:
        login(client, "ana")
        urls = [m["url"] for m in client.get(f"/api/v1/inspections/{rid}").json()["media"]]
        assert urls and all(u.startswith("/media/") for u in urls)
        assert client.get("/login", headers={"Host": "attacker.example"}).status_code == 400


def test_migration_gives_old_tokens_an_expiry_and_ends_clear_text_csrf_sessions(
    db_url: str,
) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "0005")
    engine = sa.create_engine(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (username, password_hash, role, disabled, created_at, "
                "password_changed_at) VALUES ('bot', 'x', 'reviewer', false, :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) "
                "VALUES (1, 'ci', :h, 'insp_abc', :t)"
            ),
            {"h": "a" * 64, "t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO web_sessions (token_hash, user_id, csrf_token, created_at, "
                "expires_at) VALUES (:h, 1, 'clear-text', :t, :t)"
            ),
            {"h": "b" * 64, "t": now},
        )
    engine.dispose()
    store = Store(db_url, Path("unused"))
    try:
        head = store.upgrade()
        assert store.upgrade() == head  # idempotent
        with store.db.read() as session:
            (token,) = user_store.list_tokens(session)
            sessions = session.scalar(sa.text("SELECT count(*) FROM web_sessions"))
        assert token.state == "active"
        assert timedelta(days=89) < token.expires_at - now < timedelta(days=91)
        assert sessions == 0
    finally:
        store.close()
