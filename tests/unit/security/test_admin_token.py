"""Admin token: creation, file mode, constant-time check, rotation, the 401 dependency."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from tokenhub.errors import TokenHubError
from tokenhub.security.admin_token import TOKEN_FILE, AdminToken, require_admin

ENV_TOKEN = "env-admin-token-0123456789"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_token_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    """Without an env token a 64-hex token is written with mode 0600 and reused next start."""
    first = AdminToken.load_or_create(tmp_path)
    path = tmp_path / TOKEN_FILE
    token = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert _mode(path) == 0o600 and first.source == "generated"
    again = AdminToken.load_or_create(tmp_path)
    assert again.source == "file" and again.check(token)


def test_the_env_token_wins_and_writes_no_file(tmp_path: Path) -> None:
    """TOKENHUB_ADMIN_TOKEN is used as is; no token file is created."""
    token = AdminToken.load_or_create(tmp_path, ENV_TOKEN)
    assert token.source == "env" and token.check(ENV_TOKEN)
    assert not (tmp_path / TOKEN_FILE).exists()


def test_a_too_short_env_token_is_refused_without_echo(tmp_path: Path) -> None:
    """A weak env token is rejected and the error message does not repeat it."""
    with pytest.raises(ValueError) as info:
        AdminToken.load_or_create(tmp_path, "abc123")
    assert "abc123" not in str(info.value)


def test_a_readable_token_file_is_tightened(tmp_path: Path) -> None:
    """An existing token file readable by others is set back to 0600."""
    path = tmp_path / TOKEN_FILE
    path.write_text("f" * 64)
    path.chmod(0o644)
    token = AdminToken.load_or_create(tmp_path)
    assert token.check("f" * 64) and _mode(path) == 0o600


def test_check_accepts_only_the_exact_token(tmp_path: Path) -> None:
    """Wrong, empty, missing, prefix and extended tokens all fail."""
    token = AdminToken.load_or_create(tmp_path, ENV_TOKEN)
    assert token.check(ENV_TOKEN)
    for wrong in (None, "", ENV_TOKEN[:-1], ENV_TOKEN + "x", ENV_TOKEN.upper(), "é" * 26):
        assert not token.check(wrong)


async def test_rotation_replaces_the_token_at_once_and_persists_it(tmp_path: Path) -> None:
    """After rotate the old token fails, the new one passes and survives a restart (0600)."""
    token = AdminToken.load_or_create(tmp_path)
    old = (tmp_path / TOKEN_FILE).read_text().strip()
    new = await token.rotate()
    assert new != old and re.fullmatch(r"[0-9a-f]{64}", new)
    assert not token.check(old) and token.check(new)
    assert (tmp_path / TOKEN_FILE).read_text().strip() == new
    assert _mode(tmp_path / TOKEN_FILE) == 0o600
    assert AdminToken.load_or_create(tmp_path).check(new)
    assert os.listdir(tmp_path) == [TOKEN_FILE]  # no temp file left behind


def test_the_token_is_never_logged_or_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating a token logs the file path only; repr hides the token."""
    caplog.set_level(logging.DEBUG)
    token = AdminToken.load_or_create(tmp_path)
    value = (tmp_path / TOKEN_FILE).read_text().strip()
    assert caplog.records and value not in caplog.text
    assert value not in repr(token)


def _guarded_app(token: AdminToken) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(TokenHubError)
    async def _err(_: Request, err: TokenHubError) -> Response:
        body = {"error": {"message": err.message, "type": err.openai_type, "code": err.code}}
        return Response(orjson.dumps(body), err.status, err.headers, "application/json")

    @app.get("/admin/v1/ping", dependencies=[Depends(require_admin(lambda: token))])
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_require_admin_gives_401_without_the_token(tmp_path: Path) -> None:
    """Missing, wrong or non-Bearer credentials get 401 with WWW-Authenticate: Bearer."""
    token = AdminToken.load_or_create(tmp_path, ENV_TOKEN)
    transport = httpx.ASGITransport(_guarded_app(token))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-000000"},
            {"Authorization": f"Basic {ENV_TOKEN}"},
            {"Authorization": ENV_TOKEN},
        ):
            r = await client.get("/admin/v1/ping", headers=headers)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["message"] == "missing or invalid admin token"
            assert r.json()["error"]["type"] == "authentication_error"
            assert ENV_TOKEN not in r.text
        ok = await client.get("/admin/v1/ping", headers={"Authorization": f"bearer {ENV_TOKEN}"})
        assert ok.status_code == 200 and ok.json() == {"ok": True}


async def test_require_admin_rejects_the_old_token_right_after_rotation(tmp_path: Path) -> None:
    """The dependency reads the current token per request: rotation takes effect at once."""
    token = AdminToken.load_or_create(tmp_path, ENV_TOKEN)
    transport = httpx.ASGITransport(_guarded_app(token))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        new = await token.rotate()
        old = await client.get("/admin/v1/ping", headers={"Authorization": f"Bearer {ENV_TOKEN}"})
        fresh = await client.get("/admin/v1/ping", headers={"Authorization": f"Bearer {new}"})
    assert (old.status_code, fresh.status_code) == (401, 200)
