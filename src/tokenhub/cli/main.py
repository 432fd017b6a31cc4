"""``tokenhubctl``: the command-line administration of a running TokenHub.

Connection comes from ``--url``/``TOKENHUB_URL`` and ``--token``/``TOKENHUB_ADMIN_TOKEN``.
Every failure ends as one line on stderr and a non-zero exit code (see ``client``).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tokenhub.cli import catalog, keys, observe, routing, server, vault
from tokenhub.cli.client import DEFAULT_URL, CliError, Connection

PROG = "tokenhubctl"


def root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="TOKENHUB_URL", help="The TokenHub server.")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TOKENHUB_ADMIN_TOKEN",
            show_default=False,
            help="The admin token (prefer the environment variable).",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 30.0,
) -> None:
    """Administer a running TokenHub: providers, models, keys, vault, logs and more."""
    ctx.obj = Connection(url=url, token=token, timeout=timeout)


def build() -> typer.Typer:
    """The whole command tree."""
    app = typer.Typer(
        name=PROG,
        callback=root,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    server.register(app)
    app.add_typer(vault.vault_app, name="vault")
    app.add_typer(catalog.provider_app, name="provider")
    app.add_typer(catalog.model_app, name="model")
    app.add_typer(keys.apikey_app, name="apikey")
    routing.register(app)
    observe.register(app)
    return app


app = build()


def main() -> None:
    """The console-script entry point: run the app, print a CliError as one line."""
    try:
        app(prog_name=PROG)
    except CliError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
