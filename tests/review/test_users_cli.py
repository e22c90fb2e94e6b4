"""`inspector users add|list|passwd|disable|token` against a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from inspector.cli import app
from inspector.review.passwords import digest, verify_password
from inspector.store import Store
from inspector.store import users as user_store


def test_users_commands_manage_accounts_and_tokens(tmp_path: Path) -> None:
    cfg = tmp_path / "inspector.toml"
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cfg.write_text(f'[store]\nurl = "{db}"\nblob_dir = "{tmp_path / "blobs"}"\n')
    store = Store(db, tmp_path / "blobs")
    store.upgrade()
    runner = CliRunner()

    def inspector(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(app, ["--config", str(cfg), *args], input=stdin)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    inspector("users", "add", "ana", "--role", "admin", stdin="first password\nfirst password\n")
    short = runner.invoke(app, ["--config", str(cfg), "users", "add", "bo"], input="short\nshort\n")
    assert short.exit_code != 0
    bad = runner.invoke(app, ["--config", str(cfg), "users", "add", "<b>x", "--password-stdin"])
    assert bad.exit_code != 0
    again = runner.invoke(
        app, ["--config", str(cfg), "users", "add", "ana", "--password-stdin"], input="x" * 12
    )
    assert again.exit_code != 0
    inspector("users", "passwd", "ana", "--password-stdin", stdin="second password\n")
    token = inspector("users", "token", "ana", "--name", "nightly").strip().splitlines()[-1]
    assert token.startswith("insp_")
    listing = inspector("users", "list")
    assert "ana" in listing and "admin" in listing and "nightly" in listing
    assert token not in listing
    [record] = [json.loads(line) for line in inspector("users", "list", "--json").splitlines()]
    assert record == {
        "user": "ana",
        "role": "admin",
        "state": "active",
        "created_at": record["created_at"],
        "tokens": ["nightly"],
    }
    with store.db.read() as session:
        ana = user_store.get_user(session, "ana")
        assert ana is not None and verify_password(ana.password_hash, "second password")
        assert ana.password_hash.startswith("$argon2id$")
        assert user_store.user_for_token(session, digest(token)) is not None
    inspector("users", "disable", "ana")
    assert "disabled" in inspector("users", "list")
    with store.db.read() as session:
        assert user_store.user_for_token(session, digest(token)) is None
    store.close()
