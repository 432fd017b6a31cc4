"""Run the real ``tokenhubctl`` as a subprocess without blocking the test's event loop
(the gateway under test serves from that same loop)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.integration.harness import ADMIN_TOKEN, Gateway

CLI = [sys.executable, "-m", "tokenhub.cli"]


@dataclass
class Result:
    """What one CLI run produced."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)

    def ok(self) -> Result:
        assert self.code == 0, f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"
        return self


def cli_env(url: str, home: Path, token: str | None = ADMIN_TOKEN, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: the gateway's URL and token, a private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENHUB_")}
    env.update({"TOKENHUB_URL": url, "HOME": str(home), "COLUMNS": "250", "NO_COLOR": "1"})
    if token is not None:
        env["TOKENHUB_ADMIN_TOKEN"] = token
    env.update(extra)
    return env


async def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    """``tokenhubctl ARGS`` with ``env``; ``stdin`` is fed to it when given."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # no controlling tty: prompts read the piped stdin
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), 30
    )
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class Ctl:
    """Runs the CLI against one gateway."""

    def __init__(self, g: Gateway, home: Path) -> None:
        self.env = cli_env(g.url, home)

    async def __call__(self, *args: str, stdin: str | None = None) -> Result:
        return await run_cli(self.env, *args, stdin=stdin)

    async def json(self, *args: str) -> Any:
        return (await self(*args, "--json")).ok().json()
