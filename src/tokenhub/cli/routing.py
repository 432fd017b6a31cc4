"""``tokenhubctl alias ...``, ``routing get|set``, ``simulate`` and ``engine models``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tokenhub.cli.client import ADMIN, CliError, segment
from tokenhub.cli.inputs import SPEC_HELP, load_spec, pairs
from tokenhub.cli.output import JsonFlag, Output, connect

alias_app = typer.Typer(help="List, set and delete model aliases.")
routing_app = typer.Typer(help="Show or change the routing configuration.")
engine_app = typer.Typer(help="What the routing engine sees.")

AliasName = Annotated[
    str, typer.Argument(help="Alias name (may contain slashes).", metavar="ALIAS")
]


@alias_app.command("list")
def alias_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List aliases and the models they point to."""
    data = connect(ctx).get(f"{ADMIN}/aliases")
    items = [
        {"name": a["name"], "targets": [f"{t['model']}={t['weight']:g}" for t in a["targets"]]}
        for a in data["aliases"]
    ]
    Output(as_json).rows(data, items, ["name", "targets"], "aliases")


def parse_target(item: str) -> dict[str, Any]:
    """``MODEL`` or ``MODEL=WEIGHT`` as an alias target (weight 1 by default)."""
    model, sep, raw = item.rpartition("=")
    if not sep:
        return {"model": item, "weight": 1.0}
    try:
        weight = float(raw)
    except ValueError:
        raise CliError(f"bad weight in {item!r}: expected MODEL=NUMBER") from None
    return {"model": model, "weight": weight}


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    name: AliasName,
    targets: Annotated[
        list[str], typer.Argument(help="MODEL or MODEL=WEIGHT, one or more.", metavar="TARGET...")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Point an alias at one or more models (weighted split)."""
    body = {"targets": [parse_target(t) for t in targets]}
    data = connect(ctx).put(f"{ADMIN}/aliases/{segment(name)}", body)
    Output(as_json).done(data, f"alias {name} -> {', '.join(targets)}")


@alias_app.command("delete")
def alias_delete(ctx: typer.Context, name: AliasName, as_json: JsonFlag = False) -> None:
    """Delete an alias."""
    data = connect(ctx).delete(f"{ADMIN}/aliases/{segment(name)}")
    Output(as_json).done(data, f"alias {name} deleted")


@routing_app.command("get")
def routing_get(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the routing configuration."""
    data = connect(ctx).get(f"{ADMIN}/routing-config")
    Output(as_json).fields(data, title="routing configuration")


@routing_app.command("set")
def routing_set(
    ctx: typer.Context,
    spec: Annotated[
        str | None, typer.Argument(help=SPEC_HELP, metavar="SPEC", show_default=False)
    ] = None,
    values: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE (VALUE parsed as JSON when it can be); repeatable."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change the routing configuration (fields not given keep their value)."""
    body = load_spec(spec)
    body.update(pairs(values))
    if not body:
        raise CliError("nothing to send: give a JSON spec or --set KEY=VALUE")
    data = connect(ctx).put(f"{ADMIN}/routing-config", body)
    Output(as_json).fields(data, title="routing configuration")


def simulate(
    ctx: typer.Context,
    mode: Annotated[str | None, typer.Option(help="Routing mode (profile).")] = None,
    tokens: Annotated[int | None, typer.Option(help="Input tokens of the request.")] = None,
    budget: Annotated[float | None, typer.Option(help="Maximum cost in USD.")] = None,
    min_weight: Annotated[int | None, typer.Option(help="Minimum model weight.")] = None,
    model: Annotated[str | None, typer.Option(help="The model the client asks for.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Output token limit.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show which model routing would choose for a request, and why."""
    flags = {
        "mode": mode, "token_count": tokens, "max_budget_usd": budget,
        "min_weight": min_weight, "model_hint": model, "max_tokens": max_tokens,
    }  # fmt: skip
    body = {k: v for k, v in flags.items() if v is not None}
    data = connect(ctx).post(f"{ADMIN}/routing/simulate", body)
    out = Output(as_json)
    if as_json:
        out.raw(data)
        return
    out.fields(data, {k: data.get(k) for k in ("winner", "reason", "estimated_tokens")})
    columns = ["model", "provider", "score", "estimated_cost_usd"]
    out.rows(data, data.get("eligible", []), columns, "eligible models")
    excluded = [{"model": m, "why": why} for m, why in data.get("excluded", {}).items()]
    if excluded:
        out.rows(data, excluded, ["model", "why"], "excluded models")


@engine_app.command("models")
def engine_models(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List routable models with prices and their provider's live health."""
    data = connect(ctx).get(f"{ADMIN}/engine/models")
    columns = ["id", "provider", "weight", "health", "available", "expected_latency_ms"]
    Output(as_json).rows(data, data["models"], columns, "routable models")


def register(app: typer.Typer) -> None:
    """Add the routing command groups to the root app."""
    app.add_typer(alias_app, name="alias")
    app.add_typer(routing_app, name="routing")
    app.command()(simulate)
    app.add_typer(engine_app, name="engine")
