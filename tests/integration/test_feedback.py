"""Feedback and bandit persistence over a real SQLite store and a real HTTP server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from tests.conftest import free_port
from tokenhub.api.errors import install_error_handlers
from tokenhub.api.feedback import FeedbackBundle, admin_bandit_router, feedback_router
from tokenhub.errors import Forbidden, Unauthorized
from tokenhub.observe.logsink import request_row, reward_rows
from tokenhub.routing.bandit import Bandit
from tokenhub.store.bandit import BanditRepo, BanditStore
from tokenhub.store.db import Database
from tokenhub.store.logs import LogRepo
from tokenhub.types import Attempt, Decision, ErrorClass, ModelConfig, Outcome, Policy

NOW = 1_700_000_000.0
KEYS = {"key-a": ("ka", ("feedback",)), "key-b": ("kb", ("feedback",)), "key-c": ("kc", ("chat",))}


@dataclass
class Who:
    id: str


async def authenticate(request: Request, scope: str) -> Who:
    """A tiny stand-in for the guard: bearer key -> key id, with scopes."""
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    if key not in KEYS:
        raise Unauthorized("missing or invalid api key")
    key_id, scopes = KEYS[key]
    if scope not in scopes:
        raise Forbidden("scope not allowed")
    return Who(key_id)


def _outcome(rid: str, key_id: str, status: int = 200, tokens: int = 300) -> Outcome:
    model = ModelConfig(id="m1", provider_id="p")
    failed = Attempt("m0", "p", error_class=ErrorClass.TRANSIENT, latency_ms=10.0)
    d = Decision(model=model if status < 400 else None, estimated_tokens=tokens, policy=Policy())
    d.attempts = [failed, Attempt("m1", "p", latency_ms=200.0)] if status < 400 else [failed]
    return Outcome(
        rid, "openai", NOW, status, 200.0, model="m1" if status < 400 else None, api_key_id=key_id,
        decision=d,
    )  # fmt: skip


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """These tests are about their subject, not the store: SQLite only."""
    return sqlite_db


async def _log(logs: LogRepo, *outcomes: Outcome) -> None:
    await logs.insert_batch(
        [request_row(o) for o in outcomes], [r for o in outcomes for r in reward_rows(o, Policy())]
    )


@pytest.fixture
async def served(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, Bandit, BanditRepo]]:
    logs, repo = LogRepo(db), BanditRepo(db)
    bandit = Bandit(clock=lambda: NOW, rng=random.Random(3))
    await _log(logs, _outcome("r-ok", "ka"), _outcome("r-failed", "ka", status=502))
    api = FastAPI()
    install_error_handlers(api)
    api.include_router(feedback_router(lambda: FeedbackBundle(bandit, logs, authenticate, repo)))
    api.include_router(admin_bandit_router(lambda: bandit))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client, bandit, repo
    finally:
        server.should_exit = True
        await task


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_thumbs_down_lowers_the_answering_models_arm(served: tuple) -> None:
    """A thumbs-down lands on the model that answered, in the request's bucket, and is kept."""
    client, bandit, repo = served
    body = {"request_id": "r-ok", "thumbs": "down", "comment": "wrong answer"}
    r = await client.post("/v1/feedback", json=body, headers=_as("key-a"))
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "m1" and r.json()["bucket"] == "small"
    assert bandit.mean("m1", "small") < 0.1
    stored = await repo.get_feedback("r-ok")
    assert stored is not None and stored.score == 0.0 and stored.comment == "wrong answer"


async def test_a_second_judgement_of_one_request_is_a_conflict(served: tuple) -> None:
    """Each request may be judged once."""
    client, _, _ = served
    body = {"request_id": "r-ok", "score": 0.9}
    assert (await client.post("/v1/feedback", json=body, headers=_as("key-a"))).status_code == 200
    r = await client.post("/v1/feedback", json=body, headers=_as("key-a"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "feedback_exists"


@pytest.mark.parametrize(
    "key,body,status",
    [
        (None, {"request_id": "r-ok", "score": 1}, 401),
        ("key-c", {"request_id": "r-ok", "score": 1}, 403),
        ("key-b", {"request_id": "r-ok", "score": 1}, 404),
        ("key-a", {"request_id": "nope", "score": 1}, 404),
        ("key-a", {"request_id": "r-failed", "score": 1}, 409),
        ("key-a", {"request_id": "r-ok", "score": 1, "thumbs": "up"}, 422),
        ("key-a", {"request_id": "r-ok"}, 422),
        ("key-a", {"request_id": "r-ok", "score": 1.5}, 422),
        ("key-a", {"request_id": "r-ok", "thumbs": "sideways"}, 422),
        ("key-a", {"request_id": "r-ok", "score": 1, "comment": "x" * 2001}, 422),
    ],
)
async def test_bad_feedback_is_refused(
    served: tuple, key: str | None, body: dict[str, object], status: int
) -> None:
    """Missing key 401, wrong scope 403, another key's or unknown request 404, no answer
    409, malformed body 422; the bandit learns nothing from any of them."""
    client, bandit, _ = served
    r = await client.post("/v1/feedback", json=body, headers=_as(key) if key else {})
    assert r.status_code == status, r.text
    assert bandit.summary() == []


async def test_rewards_summary_lists_every_arm(served: tuple) -> None:
    """The admin summary shows alpha, beta, mean, pulls and last update per arm."""
    client, bandit, _ = served
    bandit.update("m1", "large", 1.0)
    r = await client.get("/admin/v1/rewards/summary")
    (arm,) = r.json()["arms"]
    assert arm["model"] == "m1" and arm["bucket"] == "large" and arm["pulls"] == 1
    assert {"alpha", "beta", "mean", "updated_at"} <= set(arm)


async def test_an_empty_arm_table_is_rebuilt_from_the_reward_log(db: Database) -> None:
    """At first start the bandit replays the reward log: failed attempts count 0."""
    await _log(LogRepo(db), _outcome("r1", "ka"), _outcome("r2", "ka"))
    bandit = Bandit(clock=lambda: NOW + 60)
    replayed = await BanditStore(bandit, BanditRepo(db), clock=lambda: NOW + 60).load()
    arms = {a["model"]: a for a in bandit.summary()}
    assert replayed == 4
    assert arms["m0"]["pulls"] == 2 and arms["m0"]["mean"] < 0.1
    assert arms["m1"]["mean"] > 0.8


async def test_saved_arms_survive_a_restart(db: Database) -> None:
    """stop() saves the arms; a new store restores them without replaying old rewards."""
    clock = lambda: NOW  # noqa: E731
    first = Bandit(clock=clock)
    store = BanditStore(first, BanditRepo(db), clock=clock)
    await store.start()
    first.update("m1", "medium", 0.9)
    first.feedback("m1", "medium", 1.0)
    await store.stop()
    second = Bandit(clock=clock)
    assert await BanditStore(second, BanditRepo(db), clock=clock).load() == 0
    assert second.summary() == first.summary()
