"""Server-level commands: status, health, version, admin-token, rotate-admin-token."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from tokenhub import __version__
from tokenhub.cli.client import ADMIN, Client, CliError, Connection
from tokenhub.cli.output import JsonFlag, Output, connect

TOKEN_FILE = ".admin-token"
HOME_TOKEN = Path(".tokenhub") / TOKEN_FILE

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="TOKENHUB_DATA_DIR",
        help="The server's data directory, where it keeps .admin-token.",
    ),
]


def healthz(client: Client) -> dict[str, Any]:
    """``/healthz`` (public; answers 503 with the same body when no model is routable)."""
    body: dict[str, Any] = client.request("GET", "/healthz", accept=(503,))
    return body


def version(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the versions of this CLI and of the server."""
    server = healthz(connect(ctx)).get("version")
    data = {"client": __version__, "server": server}
    Output(as_json).done(data, f"tokenhubctl {__version__}, server {server}")


def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Summarize the server: version, vault state, counts and provider health."""
    client = connect(ctx)
    data = {
        "server": client.url,
        "healthz": healthz(client),
        "vault": client.get(f"{ADMIN}/info"),
        "counts": _counts(client),
        "health": _health_summary(client.get(f"{ADMIN}/health")),
    }
    Output(as_json).fields(data, _status_view(data), title="TokenHub status")


def _counts(client: Client) -> dict[str, int]:
    return {
        "providers": len(client.get(f"{ADMIN}/providers")["providers"]),
        "models": len(client.get(f"{ADMIN}/models")["models"]),
        "apikeys": len(client.get(f"{ADMIN}/apikeys")["apikeys"]),
    }


def _health_summary(health: dict[str, Any]) -> dict[str, int]:
    return dict(Counter(p["state"] for p in health.get("providers", [])))


def _status_view(data: dict[str, Any]) -> dict[str, Any]:
    hz, vault = data["healthz"], data["vault"]
    if not vault["vault_enabled"]:
        vault_state = "disabled"
    elif not vault["vault_initialized"]:
        vault_state = "not initialized"
    else:
        vault_state = "locked" if vault["vault_locked"] else "unlocked"
    health = ", ".join(f"{k}: {v}" for k, v in sorted(data["health"].items())) or "no providers"
    return {
        "server": data["server"],
        "status": hz.get("status"),
        "version": hz.get("version"),
        "vault": vault_state,
        "routable models": hz.get("models"),
        **data["counts"],
        "provider health": health,
    }


def health(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show each provider's health: state, cooldown, error rate, latency."""
    data = connect(ctx).get(f"{ADMIN}/health")
    columns = ["id", "type", "state", "available", "cooldown_until", "requests", "errors"]
    Output(as_json).rows(data, data["providers"], [*columns, "latency_ema_ms"], "providers")


def admin_token(ctx: typer.Context, data_dir: DataDir = Path("data")) -> None:
    """Print the admin token: from TOKENHUB_ADMIN_TOKEN, else <data dir>/.admin-token,
    else ~/.tokenhub/.admin-token."""
    conn = ctx.find_root().obj
    env_token = conn.token if isinstance(conn, Connection) else None
    if env_token:
        typer.echo(env_token)
        return
    places = [data_dir / TOKEN_FILE, Path.home() / HOME_TOKEN]
    for place in places:
        token = _read_token(place)
        if token:
            typer.echo(token)
            return
    looked = ", ".join(["TOKENHUB_ADMIN_TOKEN", *(str(p) for p in places)])
    raise CliError(f"no admin token found; looked in {looked}")


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def rotate_admin_token(
    ctx: typer.Context,
    token: Annotated[
        str | None,
        typer.Argument(
            help="The new token (at least 16 characters); random if omitted.", metavar="TOKEN"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace the admin token at once; the new one is printed once, store it now."""
    body = {"token": token} if token else None
    data = connect(ctx).post(f"{ADMIN}/admin-token/rotate", body)
    new = data["admin_token"]
    out = Output(as_json)
    if as_json:
        out.raw(data)
    else:
        out.console.print(Text("New admin token (shown once, store it now):", style="bold"))
        out.console.print(Text(new), soft_wrap=True)
    if token and new != token:
        raise CliError(
            "the server chose its own token (it ignores a requested one); use the token above"
        )


def register(app: typer.Typer) -> None:
    """Add the server-level commands to the root app."""
    app.command()(status)
    app.command()(health)
    app.command()(version)
    app.command("admin-token")(admin_token)
    app.command("rotate-admin-token")(rotate_admin_token)
