"""POST /v1/embeddings (OpenAI format) on the guarded frame: the same keys, limits,
budgets, metrics and logs as chat, routed by the embedding router."""

from __future__ import annotations

from typing import Any

from tokenhub.api import embeddings_codec, openai_codec
from tokenhub.api.hot import Exchange, GuardedHandler, HotDeps, Receive, Send, send_json
from tokenhub.errors import TokenHubError


class EmbeddingsHandler(GuardedHandler):
    surface = "embeddings"
    scope = "embeddings"

    def render_error(self, err: TokenHubError) -> bytes:
        return openai_codec.render_error(err)

    async def handle(
        self, deps: HotDeps, ex: Exchange, data: Any, receive: Receive, send: Send
    ) -> None:
        assert ex.principal is not None
        req = embeddings_codec.parse_embeddings_request(data, ex.request_id)
        req.model, _ = deps.aliases.resolve_detail(req.model)
        guard = deps.guard
        remaining = await guard.remaining_budget_usd(ex.principal)
        plan = deps.embeddings.prepare(req, max_budget_usd=remaining)
        ex.decision = plan.decision
        await guard.admit(ex.principal, plan.input_tokens)
        held = await guard.reserve(ex.principal, plan.max_cost_usd)
        try:
            resp, ex.decision = await deps.embeddings.embed(req, plan)
        except BaseException:
            await guard.release(held)
            raise
        ex.usage = resp.usage
        model = ex.decision.model
        ex.cost_usd = model.cost(resp.usage) if model is not None else 0.0
        await guard.settle(held, ex.cost_usd)
        out = embeddings_codec.encode_response(resp, req.encoding_format)
        await send_json(send, ex, out, ex.decision)
