"""`tokenhub` / `python -m tokenhub`: parse settings once, then serve."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn

from tokenhub.app import build_app
from tokenhub.config import ConfigError, load_settings
from tokenhub.credentials import CredentialsError, load_credentials_file
from tokenhub.logs import configure_logging


def main() -> None:
    try:
        settings = load_settings()
        load_credentials_file(settings.credentials_path)  # fail fast, with a clear line
    except (ConfigError, CredentialsError) as exc:
        print(f"tokenhub: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    logging.getLogger("tokenhub").info(
        "TokenHub listening on http://%s (data dir %s)", settings.listen_addr, settings.data_dir
    )
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is TokenHub's call (TOKENHUB_TRUSTED_PROXIES)
        log_config=None,
        timeout_graceful_shutdown=30,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after stopping
        _Server(config, app.begin_shutdown).run()


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when a stop signal arrives so long-lived
    streams (the admin event stream) end instead of holding the drain up."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self._on_exit()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    main()
