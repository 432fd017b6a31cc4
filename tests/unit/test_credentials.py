"""The credentials file loader: permissions, parsing and error messages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tokenhub.credentials import CredentialsError, CredentialsFile, load_credentials_file
from tokenhub.types import ModelConfig, ProviderConfig

KEY = "sk-SECRET-0123456789abcdef"


def _doc() -> dict[str, Any]:
    return {
        "providers": [
            {
                "id": "openai",
                "type": "openai",
                "base_url": "https://api.openai.com",
                "api_key": KEY,
            },
            {
                "id": "vllm",
                "type": "vllm",
                "base_url": ["http://10.0.0.1:8000", "http://10.0.0.2:8000"],
                "enabled": False,
                "autoload_models": True,
                "options": {"pool": 4},
            },
            {"id": "mock", "type": "mock"},
        ],
        "models": [
            {
                "id": "gpt-4o",
                "provider_id": "openai",
                "weight": 8,
                "max_context_tokens": 128000,
                "input_per_1k": 0.0025,
                "output_per_1k": 0.01,
            },
            {
                "id": "Qwen/Qwen2.5-Coder-32B-Instruct",
                "provider_id": "vllm",
                "weight": 6,
                "max_context_tokens": 32768,
                "input_per_1k": 0,
                "output_per_1k": 0,
                "enabled": False,
            },
        ],
    }


def _write(tmp_path: Path, content: str | dict[str, Any], mode: int = 0o600) -> Path:
    path = tmp_path / "credentials"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    os.chmod(path, mode)
    return path


def _error(tmp_path: Path, content: str | dict[str, Any], mode: int = 0o600) -> str:
    with pytest.raises(CredentialsError) as info:
        load_credentials_file(_write(tmp_path, content, mode))
    text = str(info.value)
    assert KEY not in text
    return text


def test_missing_file_returns_none(tmp_path: Path) -> None:
    """A credentials file that does not exist is not an error: the result is None."""
    assert load_credentials_file(tmp_path / "absent") is None


def test_valid_file_is_parsed(tmp_path: Path) -> None:
    """Providers, keys and models come back as the neutral types, defaults filled in."""
    got = load_credentials_file(_write(tmp_path, _doc()))
    assert got == CredentialsFile(
        providers=[
            ProviderConfig(id="openai", type="openai", base_urls=["https://api.openai.com"]),
            ProviderConfig(
                id="vllm",
                type="vllm",
                base_urls=["http://10.0.0.1:8000", "http://10.0.0.2:8000"],
                enabled=False,
                autoload_models=True,
                options={"pool": 4},
            ),
            ProviderConfig(id="mock", type="mock"),
        ],
        api_keys={"openai": KEY},
        models=[
            ModelConfig("gpt-4o", "openai", 8, 128000, 0.0025, 0.01),
            ModelConfig("Qwen/Qwen2.5-Coder-32B-Instruct", "vllm", 6, 32768, 0.0, 0.0, False),
        ],
    )


def test_repr_never_shows_api_keys(tmp_path: Path) -> None:
    """Printing a loaded CredentialsFile does not reveal the keys."""
    got = load_credentials_file(_write(tmp_path, _doc()))
    assert got is not None and KEY not in repr(got)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_group_or_other_access_is_refused_with_chmod_hint(tmp_path: Path, mode: int) -> None:
    """A file readable or writable by group/others is refused, suggesting chmod 600."""
    text = _error(tmp_path, _doc(), mode)
    assert f"chmod 600 {tmp_path / 'credentials'}" in text
    assert f"{mode:04o}" in text


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    """Mode 0400 (read-only for the owner) is private enough."""
    assert load_credentials_file(_write(tmp_path, _doc(), 0o400)) is not None


def test_invalid_json_names_the_position_not_the_content(tmp_path: Path) -> None:
    """Broken JSON gives line and column, without echoing the file's text."""
    text = _error(tmp_path, '{"providers": [{"api_key": "' + KEY + '",}]}')
    assert "not valid JSON" in text and "line 1" in text


def _with(section: str, index: int, **changes: Any) -> dict[str, Any]:
    doc = _doc()
    doc[section][index].update(changes)
    return doc


@pytest.mark.parametrize(
    "doc,expected",
    [
        (_with("models", 0, weight=11), "models[0] (id 'gpt-4o'): field 'weight'"),
        (_with("models", 0, weight=-1), "greater than or equal to 0"),
        (_with("models", 0, weight="5"), "valid integer"),
        (_with("models", 1, input_per_1k=-0.1), "field 'input_per_1k'"),
        (_with("models", 0, output_per_1k="free"), "field 'output_per_1k'"),
        (_with("models", 0, max_context_tokens=0), "field 'max_context_tokens'"),
        (_with("models", 0, provider_id="ghost"), "no provider with id 'ghost'"),
        (_with("models", 0, wieght=3), "field 'wieght': unknown field"),
        (_with("providers", 1, type="bedrock"), "providers[1] (id 'vllm'): field 'type'"),
        (_with("providers", 0, base_url=None), "field 'base_url': required for type 'openai'"),
        (_with("providers", 0, base_url="ftp://x"), "http:// or https://"),
        (_with("providers", 0, base_url=[1]), "field 'base_url"),
        (_with("providers", 0, enabled="yes"), "field 'enabled'"),
        (_with("providers", 2, id="openai"), "providers[2]: duplicate id 'openai'"),
        ({"providers": {}}, "'providers' must be a JSON array"),
        ({"providers": ["x"]}, "providers[0] must be a JSON object"),
        ({"provider": []}, "unknown top-level key(s): provider"),
        ([], "expected a JSON object"),
    ],
)
def test_invalid_entries_name_the_entry_and_field(tmp_path: Path, doc: Any, expected: str) -> None:
    """Each kind of invalid content is refused with a message naming where it is."""
    assert expected in _error(tmp_path, doc)


@pytest.mark.parametrize("bad_key", [12345, "", ["sk-SECRET-0123456789abcdef"]])
def test_invalid_api_key_is_reported_without_its_value(tmp_path: Path, bad_key: Any) -> None:
    """A malformed api_key is named as the faulty field, and its value is never echoed."""
    text = _error(tmp_path, _with("providers", 0, api_key=bad_key))
    assert "providers[0] (id 'openai'): field 'api_key'" in text
    assert "12345" not in text


def test_error_for_another_field_does_not_leak_the_key(tmp_path: Path) -> None:
    """An error in the entry holding the key still never contains the key."""
    text = _error(tmp_path, _with("providers", 0, type=KEY))
    assert "field 'type'" in text


def test_directory_is_refused(tmp_path: Path) -> None:
    """A directory at the credentials path is an error, not a crash."""
    (tmp_path / "credentials").mkdir(mode=0o700)
    with pytest.raises(CredentialsError, match="not a regular file"):
        load_credentials_file(tmp_path / "credentials")
