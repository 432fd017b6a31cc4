"""The OpenAI embeddings dialect: request parsing and response encoding.

``parse_embeddings_request`` turns a body already decoded by ``orjson.loads`` into a
neutral ``EmbeddingRequest``; unknown fields are left alone (they travel in ``raw`` for
the pass-through). ``encode_response`` goes the other way, handing the upstream bytes
through untouched when the provider spoke OpenAI. Errors render with
``tokenhub.api.openai_codec.render_error``, like every OpenAI surface.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenhub.api.validate import as_object, fail, one_of, opt_int, opt_str
from tokenhub.providers.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    EncodingFormat,
    Inputs,
    pack_vector,
)
from tokenhub.types import Dialect

MAX_INPUTS = 2048
ENCODING_FORMATS: tuple[EncodingFormat, ...] = ("float", "base64")
_INPUT_FORM = "must be a string, a list of strings, a token array or a list of token arrays"


# --- request -------------------------------------------------------------------------


def parse_embeddings_request(body: object, request_id: str) -> EmbeddingRequest:
    """Parse an OpenAI embeddings body into a neutral request (raises BadRequest)."""
    obj = as_object(body, "body")
    return EmbeddingRequest(
        inputs=parse_input(obj.get("input")),
        model=opt_str(obj, "model"),
        encoding_format=_encoding_format(obj.get("encoding_format")),
        dimensions=opt_int(obj, "dimensions", lo=1),
        user=opt_str(obj, "user"),
        request_id=request_id,
        dialect=Dialect.OPENAI,
        raw=obj,
    )


def parse_input(value: object) -> Inputs:
    """``input`` as a list of texts or a list of token arrays (one per input)."""
    if value is None:
        fail("input", "is required")
    if type(value) is str:
        if not value:
            fail("input", "must not be empty")
        return [value]
    if type(value) is not list or not value:
        fail("input", _INPUT_FORM if type(value) is not list else "must not be empty")
    if _is_int(value[0]):
        return [_tokens(value, "input")]
    if len(value) > MAX_INPUTS:
        fail("input", f"at most {MAX_INPUTS} inputs per request, got {len(value)}")
    if type(value[0]) is str:
        return [_text(item, f"input[{i}]") for i, item in enumerate(value)]
    if type(value[0]) is list:
        return [_tokens(item, f"input[{i}]") for i, item in enumerate(value)]
    fail("input", _INPUT_FORM)


def _text(value: object, path: str) -> str:
    if type(value) is not str or not value:
        fail(path, "must be a non-empty string (inputs may not mix texts and token arrays)")
    return value


def _tokens(value: object, path: str) -> list[int]:
    if type(value) is not list or not value:
        fail(path, "must be a non-empty token array")
    if not all(_is_int(t) and t >= 0 for t in value):
        fail(path, "token arrays hold whole numbers >= 0 only")
    return value


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is not a token


def _encoding_format(value: object) -> EncodingFormat:
    if value is None:
        return "float"
    return "base64" if one_of(value, ENCODING_FORMATS, "encoding_format") == "base64" else "float"


# --- response --------------------------------------------------------------------------


def encode_response(resp: EmbeddingResponse, encoding_format: EncodingFormat = "float") -> bytes:
    """An OpenAI embeddings ``list`` body; the upstream bytes when it spoke OpenAI.

    ``encoding_format`` is what the client asked for: ``base64`` sends each vector as
    base64 of little-endian float32.
    """
    if resp.dialect is Dialect.OPENAI and resp.raw is not None:
        return resp.raw
    encode = pack_vector if encoding_format == "base64" else _as_floats
    data = [
        {"object": "embedding", "index": index, "embedding": encode(vector)}
        for index, vector in enumerate(resp.vectors)
    ]
    tokens = resp.usage.prompt_tokens
    body: dict[str, Any] = {
        "object": "list",
        "data": data,
        "model": resp.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(body)


def _as_floats(vector: list[float]) -> list[float]:
    return vector
