"""The OpenAI embeddings codec: parsing requests, encoding responses."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenhub.api.embeddings_codec import MAX_INPUTS, encode_response, parse_embeddings_request
from tokenhub.errors import BadRequest
from tokenhub.providers.embeddings import EmbeddingResponse
from tokenhub.types import Dialect, Usage


def parse(body: Any) -> Any:
    return parse_embeddings_request(body, "rid-1")


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b c"], ["a", "b c"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [0]], [[1, 2], [0]]),
    ],
)
def test_every_input_form_becomes_a_list_of_inputs(value: Any, inputs: Any) -> None:
    """A string, strings, a token array or token arrays each become one entry per input."""
    req = parse({"model": "emb", "input": value})
    assert req.inputs == inputs
    assert req.model == "emb"


def test_fields_and_raw_body_are_kept() -> None:
    """model, encoding_format, dimensions, user and the raw body reach the request."""
    body = {
        "model": "m",
        "input": "x",
        "encoding_format": "base64",
        "dimensions": 256,
        "user": "u",
        "vendor_extra": True,
    }
    req = parse(body)
    assert (req.encoding_format, req.dimensions, req.user) == ("base64", 256, "u")
    assert req.request_id == "rid-1"
    assert req.dialect is Dialect.OPENAI and req.raw is body


def test_defaults() -> None:
    """Without options the format is float and nothing else is set; model is optional."""
    req = parse({"input": "x", "encoding_format": None})
    assert (req.model, req.encoding_format, req.dimensions, req.user) == (None, "float", None, None)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "input: is required"),
        ({"input": None}, "input: is required"),
        ({"input": ""}, "input: must not be empty"),
        ({"input": []}, "input: must not be empty"),
        ({"input": 5}, "input: must be a string, a list"),
        ({"input": {"text": "x"}}, "input: must be a string, a list"),
        ({"input": [""]}, "input[0]: must be a non-empty string"),
        ({"input": ["a", 1]}, "input[1]: must be a non-empty string"),
        ({"input": [[1], "a"]}, "input[1]: must be a non-empty token array"),
        ({"input": [[1], []]}, "input[1]: must be a non-empty token array"),
        ({"input": [1, "a"]}, "input: token arrays hold whole numbers"),
        ({"input": [1, -2]}, "input: token arrays hold whole numbers"),
        ({"input": [[1.5]]}, "input[0]: token arrays hold whole numbers"),
        ({"input": [True]}, "input: must be a string, a list"),
        ({"input": [None]}, "input: must be a string, a list"),
        ({"input": "x", "model": 3}, "model: must be a string"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format: must be one of float"),
        ({"input": "x", "dimensions": 0}, "dimensions: must be a whole number >= 1"),
        ({"input": "x", "dimensions": "8"}, "dimensions: must be a whole number >= 1"),
        ({"input": "x", "user": ["u"]}, "user: must be a string"),
        ([], "body: must be a JSON object"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(body: Any, path: str) -> None:
    """Each invalid body is a BadRequest whose message starts with the field's path."""
    with pytest.raises(BadRequest) as info:
        parse(body)
    assert info.value.status == 400
    assert info.value.message.startswith(path), info.value.message


def test_at_most_2048_inputs() -> None:
    """2048 inputs are fine; one more is a 400 naming ``input``."""
    assert len(parse({"input": ["w"] * MAX_INPUTS}).inputs) == MAX_INPUTS
    with pytest.raises(BadRequest, match=r"^input: at most 2048 inputs per request, got 2049"):
        parse({"input": ["w"] * (MAX_INPUTS + 1)})
    with pytest.raises(BadRequest, match=r"^input: at most 2048"):
        parse({"input": [[1]] * (MAX_INPUTS + 1)})


def test_one_long_token_array_is_one_input() -> None:
    """A single token array longer than 2048 tokens is one input, not too many."""
    assert parse({"input": list(range(5000))}).inputs == [list(range(5000))]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.text(max_size=4),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=12,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_json_input_parses_or_is_a_bad_request(value: Any) -> None:
    """Whatever JSON ``input`` holds, parsing yields inputs or a BadRequest, nothing else."""
    try:
        req = parse({"input": value})
    except BadRequest as exc:
        assert exc.message.startswith("input")
        return
    assert req.inputs and all(isinstance(i, str | list) for i in req.inputs)


# --- response --------------------------------------------------------------------------


def response(**kw: Any) -> EmbeddingResponse:
    base: dict[str, Any] = {
        "model": "emb-small",
        "vectors": [[0.5, -1.0], [0.25, 2.0]],
        "usage": Usage(prompt_tokens=9),
    }
    return EmbeddingResponse(**{**base, **kw})


def test_encode_builds_the_openai_list_of_floats() -> None:
    """A neutral response becomes OpenAI's list body with float vectors and usage."""
    body = orjson.loads(encode_response(response()))
    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]},
        ],
        "model": "emb-small",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }


def test_encode_base64_is_little_endian_float32() -> None:
    """With base64 asked, each vector is base64 of little-endian float32 values."""
    body = orjson.loads(encode_response(response(), "base64"))
    first = base64.b64decode(body["data"][0]["embedding"])
    assert first == struct.pack("<2f", 0.5, -1.0)
    assert struct.unpack("<2f", base64.b64decode(body["data"][1]["embedding"])) == (0.25, 2.0)


def test_openai_upstream_bytes_pass_through() -> None:
    """When the provider spoke OpenAI its bytes go to the client untouched."""
    raw = b'{"object":"list","data":[],"model":"up","usage":{"prompt_tokens":1}}'
    assert encode_response(response(dialect=Dialect.OPENAI, raw=raw), "base64") is raw
