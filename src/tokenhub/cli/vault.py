"""``tokenhubctl vault init|unlock|lock|rotate``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tokenhub.cli.client import ADMIN
from tokenhub.cli.inputs import PASSWORD_NOTE, password
from tokenhub.cli.output import JsonFlag, Output, connect

vault_app = typer.Typer(help="Initialize, unlock, lock and rotate the secrets vault.")

Password = Annotated[
    str | None, typer.Option("--password", help=f"Vault password. {PASSWORD_NOTE}")
]


def _state(data: dict[str, Any]) -> str:
    if not data.get("vault_initialized"):
        return "not initialized"
    return "locked" if data.get("vault_locked") else "unlocked"


@vault_app.command("init")
def init(ctx: typer.Context, pw: Password = None, as_json: JsonFlag = False) -> None:
    """Create the vault with a new password (asked twice when prompted)."""
    value = password(pw, "New vault password", confirm=True)
    data = connect(ctx).post(f"{ADMIN}/vault/init", {"password": value})
    Output(as_json).done(data, f"vault initialized ({_state(data)})")


@vault_app.command("unlock")
def unlock(ctx: typer.Context, pw: Password = None, as_json: JsonFlag = False) -> None:
    """Unlock the vault so provider keys can be used."""
    value = password(pw, "Vault password")
    data = connect(ctx).post(f"{ADMIN}/vault/unlock", {"password": value})
    Output(as_json).done(data, f"vault {_state(data)}")


@vault_app.command("lock")
def lock(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Lock the vault now (its key leaves memory)."""
    data = connect(ctx).post(f"{ADMIN}/vault/lock")
    Output(as_json).done(data, f"vault {_state(data)}")


@vault_app.command("rotate")
def rotate(
    ctx: typer.Context,
    old: Annotated[
        str | None, typer.Option("--old-password", help=f"Current password. {PASSWORD_NOTE}")
    ] = None,
    new: Annotated[
        str | None, typer.Option("--new-password", help=f"New password. {PASSWORD_NOTE}")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change the vault password and re-encrypt every secret."""
    body = {
        "old_password": password(old, "Current vault password"),
        "new_password": password(new, "New vault password", confirm=True),
    }
    data = connect(ctx).post(f"{ADMIN}/vault/rotate", body)
    count = data.get("secrets_reencrypted", 0)
    Output(as_json).done(data, f"vault password changed; {count} secrets re-encrypted")
