"""Client feedback on answers, and the bandit's arms for the admin.

    POST /v1/feedback               {request_id, score: 0..1 | thumbs: "up"|"down",
                                     comment?: str <= 2000}   (client key, scope feedback)
    GET  /admin/v1/rewards/summary  every arm: alpha, beta, mean, pulls, last update

Feedback folds the client's judgement of quality into the arm of the model that
answered the request (and the request's token bucket). Only the key that made the
request may judge it, once; any other key gets the same 404 as an unknown request, so
request ids of other keys cannot be probed. The request log is written by the
recorder within a fraction of a second, so feedback sent in that instant may get 404.
"""

# No ``from __future__ import annotations``: FastAPI must resolve the Annotated
# dependencies declared inside the router functions at definition time.
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tokenhub.errors import Conflict, NotFound, Unprocessable
from tokenhub.observe.logsink import token_bucket
from tokenhub.routing.bandit import Bandit
from tokenhub.store.bandit import BanditRepo, FeedbackRow
from tokenhub.store.logs import LogRepo

SCOPE = "feedback"
THUMBS = {"up": 1.0, "down": 0.0}


class Principal(Protocol):
    """Who sent the feedback: anything with the key's ``id``."""

    @property
    def id(self) -> str: ...


Authenticate = Callable[[Request, str], Awaitable[Principal]]
"""``(request, scope) -> principal``; raises 401 (no valid key) or 403 (scope)."""


@dataclass
class FeedbackBundle:
    """What the feedback routes need; ``repo`` may be None to skip storing feedback."""

    bandit: Bandit
    logs: LogRepo
    authenticate: Authenticate
    repo: BanditRepo | None = None


class FeedbackIn(BaseModel):
    """A judgement of one answer: exactly one of ``score`` and ``thumbs``."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200)
    score: float | None = Field(None, ge=0.0, le=1.0)
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(None, max_length=2000)

    def value(self) -> float:
        """The score in [0, 1]; ``Unprocessable`` unless exactly one form was given."""
        if (self.score is None) == (self.thumbs is None):
            raise Unprocessable("give exactly one of score and thumbs", code="bad_feedback")
        return self.score if self.score is not None else THUMBS[self.thumbs or "down"]


def feedback_router(get: Callable[[], FeedbackBundle]) -> APIRouter:
    """POST /v1/feedback; authentication is done in the handler through the bundle."""
    router = APIRouter(tags=["public"])
    Bundle = Annotated[FeedbackBundle, Depends(get)]

    # A dependency runs before the body is validated: no key means 401, not 422.
    async def who(request: Request, b: Bundle) -> Principal:
        return await b.authenticate(request, SCOPE)

    @router.post("/v1/feedback")
    async def give_feedback(
        principal: Annotated[Principal, Depends(who)], body: FeedbackIn, b: Bundle
    ) -> dict[str, Any]:
        score = body.value()
        model, bucket = await _answered_by(b.logs, body.request_id, principal.id)
        if b.repo is not None:
            row = FeedbackRow(
                body.request_id, time.time(), principal.id, model, bucket, score, body.comment
            )
            if not await b.repo.add_feedback(row):
                raise Conflict("feedback already given for this request", code="feedback_exists")
        b.bandit.feedback(model, bucket, score)
        return {
            "request_id": body.request_id,
            "model": model,
            "bucket": bucket,
            "score": score,
            "arm_mean": round(b.bandit.mean(model, bucket), 6),
        }

    return router


async def _answered_by(logs: LogRepo, request_id: str, key_id: str) -> tuple[str, str]:
    """The model that answered ``request_id`` for ``key_id`` and the request's bucket."""
    row = await logs.get_request(request_id)
    if row is None or row["api_key_id"] != key_id:
        raise NotFound(f"no request {request_id[:200]!r} for this key", code="request_not_found")
    if row["model"] is None or row["status"] >= 400:
        raise Conflict("the request got no answer to judge", code="no_answer")
    trace = row.get("trace") or {}
    tokens = trace.get("estimated_tokens") or row["tokens_in"]
    return str(row["model"]), token_bucket(int(tokens))


def admin_bandit_router(get: Callable[[], Bandit]) -> APIRouter:
    """GET /admin/v1/rewards/summary; the admin guard is attached by whoever mounts it."""
    router = APIRouter(prefix="/admin/v1", tags=["admin", "observe"])

    @router.get("/rewards/summary")
    async def rewards_summary(bandit: Annotated[Bandit, Depends(get)]) -> dict[str, Any]:
        return {
            "arms": bandit.summary(),
            "half_life_s": bandit.half_life_s,
            "prior": list(bandit.prior),
            "feedback_weight": bandit.feedback_weight,
        }

    return router
