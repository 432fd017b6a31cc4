"""``tokenhubctl logs|audit|rewards|stats|events`` and ``tsdb metrics|query|prune|retention``."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from tokenhub.cli.client import ADMIN
from tokenhub.cli.output import JsonFlag, Output, cell, connect, with_times

tsdb_app = typer.Typer(help="The embedded time-series store: metrics, queries, retention.")

Limit = Annotated[int, typer.Option("--limit", "-n", help="How many rows (newest first).")]
Offset = Annotated[int, typer.Option("--offset", help="Rows to skip.")]
Model = Annotated[str | None, typer.Option("--model", help="Only this model.")]
Provider = Annotated[str | None, typer.Option("--provider", help="Only this provider.")]
Key = Annotated[str | None, typer.Option("--key", help="Only this API key id.")]
LOG_COLUMNS = ["ts", "request_id", "model", "provider", "status", "latency_ms", "cost_usd"]
REWARD_COLUMNS = ["ts", "request_id", "attempt", "model", "success", "latency_ms", "reward"]


def logs(
    ctx: typer.Context,
    limit: Limit = 50,
    offset: Offset = 0,
    model: Model = None,
    provider: Provider = None,
    status: Annotated[
        str | None, typer.Option("--status", help="An HTTP status, ok or error.")
    ] = None,
    key: Key = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the request log, newest first."""
    data = connect(ctx).get(
        f"{ADMIN}/logs", limit=limit, offset=offset, model=model, provider=provider,
        status=status, key=key,
    )  # fmt: skip
    Output(as_json).rows(data, with_times(data["logs"], "ts"), LOG_COLUMNS, "requests")


def rewards(
    ctx: typer.Context,
    limit: Limit = 50,
    offset: Offset = 0,
    model: Model = None,
    provider: Provider = None,
    status: Annotated[str | None, typer.Option("--status", help="success or failure.")] = None,
    key: Key = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the reward log (one row per routing attempt), newest first."""
    data = connect(ctx).get(
        f"{ADMIN}/rewards", limit=limit, offset=offset, model=model, provider=provider,
        status=status, key=key,
    )  # fmt: skip
    Output(as_json).rows(data, with_times(data["rewards"], "ts"), REWARD_COLUMNS, "rewards")


def audit(
    ctx: typer.Context,
    limit: Limit = 100,
    offset: Offset = 0,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action, e.g. apikey.create.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the audit trail of admin changes, newest first."""
    data = connect(ctx).get(f"{ADMIN}/audit", limit=limit, offset=offset, action=action)
    entries = data["entries"]
    columns = list(entries[0]) if entries else []
    Output(as_json).rows(data, entries, columns, "audit entries")


def stats(
    ctx: typer.Context,
    window: Annotated[str, typer.Option("--window", help="Window, e.g. 1h, 24h, 7d.")] = "24h",
    as_json: JsonFlag = False,
) -> None:
    """Show request statistics over a window: global, by model, by provider."""
    data = connect(ctx).get(f"{ADMIN}/stats", window=window)
    out = Output(as_json)
    if as_json:
        out.raw(data)
        return
    scalars = {k: v for k, v in data.items() if not isinstance(v, list)}
    out.fields(data, scalars, title=f"stats over {window}")
    for name, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out.rows(data, value, list(value[0]), name)


def events(
    ctx: typer.Context,
    types: Annotated[
        str | None, typer.Option("--types", help="Comma-separated event types to show.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Follow live gateway events (Server-Sent Events) until Ctrl-C."""
    client = connect(ctx)
    try:
        for line in client.stream_lines(f"{ADMIN}/events", types=types):
            if line.startswith("data:"):
                _print_event(line[5:].strip(), as_json)
            elif line.startswith(": connected"):
                typer.echo(
                    f"connected to {client.url}; waiting for events (Ctrl-C stops)", err=True
                )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _print_event(payload: str, as_json: bool) -> None:
    if as_json:
        typer.echo(payload)
        return
    try:
        event: dict[str, Any] = orjson.loads(payload)
    except orjson.JSONDecodeError:
        typer.echo(payload)
        return
    head = f"{event.pop('type', '?')}"
    event.pop("ts", None)
    rest = " ".join(f"{k}={cell(v)}" for k, v in event.items())
    typer.echo(f"{head} {rest}".rstrip())


@tsdb_app.command("metrics")
def tsdb_metrics(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List stored metrics with their point counts and retention."""
    data = connect(ctx).get(f"{ADMIN}/tsdb/metrics")
    items = [{**m, "series": len(m["series"])} for m in data["metrics"]]
    title = f"metrics (retention {data.get('retention_days')} days)"
    Output(as_json).rows(data, items, ["name", "points", "series"], title)


@tsdb_app.command("query")
def tsdb_query(
    ctx: typer.Context,
    metric: Annotated[
        str, typer.Argument(help="Metric name (see `tsdb metrics`).", metavar="METRIC")
    ],
    start: Annotated[str | None, typer.Option(help="Epoch seconds or ISO-8601.")] = None,
    end: Annotated[str | None, typer.Option(help="Epoch seconds or ISO-8601.")] = None,
    step: Annotated[str | None, typer.Option(help="Bucket size: 60, 30s, 5m, 1h, 1d.")] = None,
    model: Model = None,
    provider: Provider = None,
    group_by: Annotated[str | None, typer.Option(help="model, provider or both.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Query one metric as time buckets (avg, max, count, sum)."""
    data = connect(ctx).get(
        f"{ADMIN}/tsdb/query", metric=metric, start=start, end=end, step=step, model=model,
        provider=provider, group_by=group_by,
    )  # fmt: skip
    points = [
        {"model": s["model"], "provider": s["provider"], **p}
        for s in data["series"]
        for p in with_times(s["points"], "ts")
    ]
    columns = ["ts", "model", "provider", "avg", "max", "count", "sum"]
    Output(as_json).rows(data, points, columns, f"{metric} points")


@tsdb_app.command("prune")
def tsdb_prune(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Delete points older than the retention now."""
    data = connect(ctx).post(f"{ADMIN}/tsdb/prune")
    Output(as_json).done(data, f"pruned {data.get('deleted')} points")


@tsdb_app.command("retention")
def tsdb_retention(
    ctx: typer.Context,
    days: Annotated[
        int | None,
        typer.Argument(help="New retention in days; shows it if omitted.", metavar="DAYS"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show or set how many days of points are kept."""
    client = connect(ctx)
    if days is None:
        data = client.get(f"{ADMIN}/tsdb/retention")
    else:
        data = client.put(f"{ADMIN}/tsdb/retention", {"days": days})
    Output(as_json).done(data, f"retention: {data['days']} days")


def register(app: typer.Typer) -> None:
    """Add the observability commands to the root app."""
    app.command()(logs)
    app.command()(audit)
    app.command()(rewards)
    app.command()(stats)
    app.command()(events)
    app.add_typer(tsdb_app, name="tsdb")
