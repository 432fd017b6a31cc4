"""The admin token: the bearer secret every ``/admin/v1/*`` route requires.

``TOKENHUB_ADMIN_TOKEN`` sets it; otherwise a random 64-hex token is generated at first
start and kept in ``<data dir>/.admin-token`` (mode 0600). The token is never logged,
never put in an exception message, and compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Request

from tokenhub.errors import Unauthorized

log = logging.getLogger("tokenhub.admin_token")

TOKEN_FILE = ".admin-token"
MIN_TOKEN_CHARS = 16


def generate_token() -> str:
    """A fresh random token: 32 bytes as 64 hex characters."""
    return secrets.token_hex(32)


class AdminToken:
    """Holds the current admin token; ``check`` compares in constant time.

    ``source`` says where it came from: ``env``, ``file`` or ``generated``.
    """

    def __init__(self, token: str, path: Path, source: str) -> None:
        self._token = token.encode()
        self.path = path
        self.source = source
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AdminToken(source={self.source!r}, path={str(self.path)!r})"

    @classmethod
    def load_or_create(cls, data_dir: Path, env_token: str | None = None) -> AdminToken:
        """The token from ``env_token`` if set, else from the token file, else a new one
        written to the file with mode 0600."""
        path = Path(data_dir) / TOKEN_FILE
        if env_token:
            _check_form(env_token)
            return cls(env_token, path, "env")
        if path.exists():
            _make_private(path)
            token = path.read_text(encoding="utf-8").strip()
            _check_form(token)
            return cls(token, path, "file")
        token = generate_token()
        write_private(path, token)
        log.info("admin token generated and written to %s", path)
        return cls(token, path, "generated")

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is the current token (constant-time compare)."""
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    async def rotate(self, new: str | None = None) -> str:
        """Replace the token at once (the old one fails from now on) and persist it.

        Returns the new token; the caller shows it once and never again. The file is
        written first, so a failure to persist leaves the old token in force.
        """
        token = new or generate_token()
        _check_form(token)
        async with self._lock:
            await asyncio.to_thread(write_private, self.path, token)
            self._token = token.encode()
            self.source = "file"
        log.info("admin token rotated")
        return token


def require_admin(get_token: Callable[[], AdminToken]) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: 401 unless ``Authorization: Bearer <admin token>``."""

    async def guard(request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not get_token().check(presented.strip()):
            raise Unauthorized(
                "missing or invalid admin token", headers={"WWW-Authenticate": "Bearer"}
            )

    return guard


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _make_private(path: Path) -> None:
    # An older or hand-made file may be group/world readable: tighten it, say so.
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
        log.warning("admin token file %s was readable by others; mode set to 0600", path)


def _check_form(token: str) -> None:
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(
            f"admin token must be at least {MIN_TOKEN_CHARS} characters without whitespace"
        )
