"""One copy of the uvicorn start/stop dance the integration harnesses share: a real
server on a loopback port, up before the block runs and drained after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn

from tests.conftest import free_port


@asynccontextmanager
async def serve_app(
    app: Callable[..., Any],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    lifespan: Literal["auto", "on", "off"] = "off",
    access_log: bool = False,
    stop_timeout_s: float = 10.0,
    **config: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (a free port when none is given) and yield its base
    URL; raises if it does not start. Extra keywords go to ``uvicorn.Config``."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan=lifespan,
            log_config=None,
            access_log=access_log,
            loop="none",
            **config,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # surfaces the start-up error, if there was one
        raise RuntimeError(f"server on {host}:{port} did not start")
    if not server.started:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout_s)
        raise RuntimeError(f"server on {host}:{port} did not start within 5 s")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout_s)
