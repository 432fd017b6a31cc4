"""`tokenhub` / `python -m tokenhub`: parse settings once, then serve."""

from __future__ import annotations

import logging
import sys

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
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
