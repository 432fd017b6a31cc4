"""``tokenhubctl apikey list|create|rotate|edit|delete``: client API keys.

The key itself is shown exactly once, by ``create`` and ``rotate``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from tokenhub.cli.client import ADMIN, segment
from tokenhub.cli.inputs import SPEC_HELP, body_of
from tokenhub.cli.output import JsonFlag, Output, connect, with_times

apikey_app = typer.Typer(help="Create, list, rotate, edit and delete client API keys.")

KeyId = Annotated[str, typer.Argument(help="Key id (from `apikey list`).", metavar="KEY_ID")]
Spec = Annotated[str | None, typer.Option("--spec", help=SPEC_HELP, show_default=False)]
Scopes = Annotated[
    list[str] | None, typer.Option("--scope", help="A scope the key grants (repeatable).")
]
Expires = Annotated[str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30d or 12h.")]
Rotation = Annotated[int | None, typer.Option("--rotation-days", help="Rotation reminder period.")]
Budget = Annotated[float | None, typer.Option("--budget", help="Monthly budget in USD.")]
Rpm = Annotated[int | None, typer.Option("--rpm", help="Requests per minute limit.")]
Tpm = Annotated[int | None, typer.Option("--tpm", help="Tokens per minute limit.")]
COLUMNS = ["id", "prefix", "name", "scopes", "enabled", "expires_at", "month_to_date_spend_usd"]


def _flags(**kw: Any) -> dict[str, Any]:
    if "budget" in kw:
        kw["monthly_budget_usd"] = kw.pop("budget")
    return kw


def _show_key(out: Output, data: dict[str, Any], verb: str) -> None:
    if out.as_json:
        out.raw(data)
        return
    out.console.print(Text(f"API key {data['id']} ({data['name']}) {verb}."))
    out.console.print(Text("The key is shown once; store it now:", style="bold"))
    out.console.print(Text(data["key"]), soft_wrap=True)


@apikey_app.command("list")
def key_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List client keys (never the keys themselves) with their spend this month."""
    data = connect(ctx).get(f"{ADMIN}/apikeys")
    items = with_times(data["apikeys"], "expires_at")
    Output(as_json).rows(data, items, COLUMNS, "API keys")


@apikey_app.command("create")
def key_create(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="A name for the key.", metavar="NAME")] = None,
    spec: Spec = None,
    scopes: Scopes = None,
    expires_in: Expires = None,
    rotation_days: Rotation = None,
    budget: Budget = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a client key and print it once."""
    flags = _flags(
        name=name, scopes=scopes, expires_in=expires_in, rotation_days=rotation_days,
        budget=budget, rpm=rpm, tpm=tpm,
    )  # fmt: skip
    data = connect(ctx).post(f"{ADMIN}/apikeys", body_of(spec, flags))
    _show_key(Output(as_json), data, "created")


@apikey_app.command("rotate")
def key_rotate(ctx: typer.Context, key_id: KeyId, as_json: JsonFlag = False) -> None:
    """Replace a key's secret (the old one stops working) and print the new one once."""
    data = connect(ctx).post(f"{ADMIN}/apikeys/{segment(key_id)}/rotate")
    _show_key(Output(as_json), data, "rotated")


@apikey_app.command("edit")
def key_edit(
    ctx: typer.Context,
    key_id: KeyId,
    spec: Spec = None,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    scopes: Scopes = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Enable or disable.")
    ] = None,
    expires_in: Expires = None,
    rotation_days: Rotation = None,
    budget: Budget = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    as_json: JsonFlag = False,
) -> None:
    """Change some fields of a key."""
    flags = _flags(
        name=name, scopes=scopes, enabled=enabled, expires_in=expires_in,
        rotation_days=rotation_days, budget=budget, rpm=rpm, tpm=tpm,
    )  # fmt: skip
    data = connect(ctx).patch(f"{ADMIN}/apikeys/{segment(key_id)}", body_of(spec, flags))
    Output(as_json).done(data, f"API key {data['id']} updated")


@apikey_app.command("delete")
def key_delete(ctx: typer.Context, key_id: KeyId, as_json: JsonFlag = False) -> None:
    """Revoke and delete a key."""
    data = connect(ctx).delete(f"{ADMIN}/apikeys/{segment(key_id)}")
    Output(as_json).done(data, f"API key {key_id} deleted")
