"""``tokenhubctl provider ...`` and ``tokenhubctl model ...`` (model ids may contain slashes)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tokenhub.cli.client import ADMIN, segment
from tokenhub.cli.inputs import SPEC_HELP, body_of
from tokenhub.cli.output import JsonFlag, Output, connect

provider_app = typer.Typer(help="List, add, edit, delete and discover providers.")
model_app = typer.Typer(help="List, add, edit, delete, enable and disable models.")

Spec = Annotated[str | None, typer.Argument(help=SPEC_HELP, metavar="SPEC", show_default=False)]
Enabled = Annotated[
    bool | None, typer.Option("--enabled/--disabled", help="Enable or disable.", show_default=False)
]
PROVIDER_COLUMNS = ["id", "type", "base_url", "enabled", "has_api_key", "models"]
MODEL_COLUMNS = ["id", "provider_id", "weight", "max_context_tokens", "input_per_1k"]


def _base_url(urls: list[str] | None) -> str | list[str] | None:
    if not urls:
        return None
    return urls[0] if len(urls) == 1 else urls


@provider_app.command("list")
def provider_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List providers (keys are never shown, only whether one is set)."""
    data = connect(ctx).get(f"{ADMIN}/providers")
    Output(as_json).rows(data, data["providers"], PROVIDER_COLUMNS, "providers")


def _provider_flags(
    ptype: str | None, urls: list[str] | None, key: str | None, enabled: bool | None
) -> dict[str, Any]:
    return {"type": ptype, "base_url": _base_url(urls), "api_key": key, "enabled": enabled}


PType = Annotated[str | None, typer.Option("--type", help="openai, anthropic, vllm, mock...")]
Urls = Annotated[list[str] | None, typer.Option("--base-url", help="Base URL (repeatable).")]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="Provider API key (visible in the process list; prefer a JSON spec from a file).",
    ),
]


@provider_app.command("add")
def provider_add(
    ctx: typer.Context,
    spec: Spec = None,
    pid: Annotated[str | None, typer.Option("--id", help="Provider id.")] = None,
    ptype: PType = None,
    urls: Urls = None,
    key: ApiKey = None,
    enabled: Enabled = None,
    as_json: JsonFlag = False,
) -> None:
    """Add (or replace) a provider."""
    body = body_of(spec, {"id": pid, **_provider_flags(ptype, urls, key, enabled)})
    data = connect(ctx).post(f"{ADMIN}/providers", body)
    Output(as_json).done(data, f"provider {data['id']} saved")


@provider_app.command("edit")
def provider_edit(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(help="Provider id.", metavar="PROVIDER_ID")],
    spec: Spec = None,
    ptype: PType = None,
    urls: Urls = None,
    key: ApiKey = None,
    enabled: Enabled = None,
    as_json: JsonFlag = False,
) -> None:
    """Change some fields of a provider."""
    body = body_of(spec, _provider_flags(ptype, urls, key, enabled))
    data = connect(ctx).patch(f"{ADMIN}/providers/{segment(pid)}", body)
    Output(as_json).done(data, f"provider {data['id']} updated")


@provider_app.command("delete")
def provider_delete(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(help="Provider id.", metavar="PROVIDER_ID")],
    as_json: JsonFlag = False,
) -> None:
    """Delete a provider."""
    data = connect(ctx).delete(f"{ADMIN}/providers/{segment(pid)}")
    Output(as_json).done(data, f"provider {pid} deleted")


@provider_app.command("discover")
def provider_discover(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(help="Provider id.", metavar="PROVIDER_ID")],
    register: Annotated[bool, typer.Option("--register", help="Also add what is found.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Ask a provider which models it serves (and register them with --register)."""
    client = connect(ctx)
    path = f"{ADMIN}/providers/{segment(pid)}/discover"
    data = client.post(path) if register else client.get(path)
    Output(as_json).fields(data, title=f"discovered at {pid}")


@model_app.command("list")
def model_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List models with their provider, weight, context and prices."""
    data = connect(ctx).get(f"{ADMIN}/models")
    columns = [*MODEL_COLUMNS, "output_per_1k", "enabled"]
    Output(as_json).rows(data, data["models"], columns, "models")


def _model_flags(**flags: Any) -> dict[str, Any]:
    names = {"provider": "provider_id", "max_context": "max_context_tokens"}
    return {names.get(k, k): v for k, v in flags.items()}


Provider = Annotated[str | None, typer.Option("--provider", help="Provider id.")]
Weight = Annotated[int | None, typer.Option("--weight", help="0-10, higher is preferred.")]
Context = Annotated[int | None, typer.Option("--max-context", help="Context window in tokens.")]
PriceIn = Annotated[float | None, typer.Option("--input-per-1k", help="USD per 1k input tokens.")]
PriceOut = Annotated[
    float | None, typer.Option("--output-per-1k", help="USD per 1k output tokens.")
]
Upstream = Annotated[str | None, typer.Option("--upstream-id", help="The provider's model name.")]
ModelId = Annotated[str, typer.Argument(help="Model id (may contain slashes).", metavar="MODEL_ID")]


@model_app.command("add")
def model_add(
    ctx: typer.Context,
    spec: Spec = None,
    mid: Annotated[str | None, typer.Option("--id", help="Model id.")] = None,
    provider: Provider = None,
    weight: Weight = None,
    max_context: Context = None,
    input_per_1k: PriceIn = None,
    output_per_1k: PriceOut = None,
    upstream_id: Upstream = None,
    enabled: Enabled = None,
    as_json: JsonFlag = False,
) -> None:
    """Add (or replace) a model."""
    flags = _model_flags(
        id=mid, provider=provider, weight=weight, max_context=max_context,
        input_per_1k=input_per_1k, output_per_1k=output_per_1k,
        upstream_id=upstream_id, enabled=enabled,
    )  # fmt: skip
    data = connect(ctx).post(f"{ADMIN}/models", body_of(spec, flags))
    Output(as_json).done(data, f"model {data['id']} saved")


@model_app.command("edit")
def model_edit(
    ctx: typer.Context,
    mid: ModelId,
    spec: Spec = None,
    provider: Provider = None,
    weight: Weight = None,
    max_context: Context = None,
    input_per_1k: PriceIn = None,
    output_per_1k: PriceOut = None,
    upstream_id: Upstream = None,
    enabled: Enabled = None,
    as_json: JsonFlag = False,
) -> None:
    """Change some fields of a model."""
    flags = _model_flags(
        provider=provider, weight=weight, max_context=max_context,
        input_per_1k=input_per_1k, output_per_1k=output_per_1k,
        upstream_id=upstream_id, enabled=enabled,
    )  # fmt: skip
    data = connect(ctx).patch(f"{ADMIN}/models/{segment(mid)}", body_of(spec, flags))
    Output(as_json).done(data, f"model {data['id']} updated")


@model_app.command("delete")
def model_delete(ctx: typer.Context, mid: ModelId, as_json: JsonFlag = False) -> None:
    """Delete a model."""
    data = connect(ctx).delete(f"{ADMIN}/models/{segment(mid)}")
    Output(as_json).done(data, f"model {mid} deleted")


def _set_enabled(ctx: typer.Context, mid: str, enabled: bool, as_json: bool) -> None:
    data = connect(ctx).patch(f"{ADMIN}/models/{segment(mid)}", {"enabled": enabled})
    Output(as_json).done(data, f"model {mid} {'enabled' if enabled else 'disabled'}")


@model_app.command("enable")
def model_enable(ctx: typer.Context, mid: ModelId, as_json: JsonFlag = False) -> None:
    """Let routing choose a model again."""
    _set_enabled(ctx, mid, True, as_json)


@model_app.command("disable")
def model_disable(ctx: typer.Context, mid: ModelId, as_json: JsonFlag = False) -> None:
    """Keep a model out of routing without deleting it."""
    _set_enabled(ctx, mid, False, as_json)
