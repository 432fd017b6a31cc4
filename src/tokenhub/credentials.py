"""The credentials file: providers, their API keys and models, read once at startup.

Default location ``~/.tokenhub/credentials``; JSON of the form::

    {"providers": [{"id": "openai", "type": "openai", "base_url": "https://...",
                    "api_key": "sk-...", "enabled": true, "autoload_models": false,
                    "options": {}}],
     "models": [{"id": "gpt-4o", "provider_id": "openai", "weight": 8,
                 "max_context_tokens": 128000, "input_per_1k": 0.0025,
                 "output_per_1k": 0.01, "enabled": true}]}

The file must be private (mode 0600 or stricter). Every error message names the entry
and field at fault and never repeats a value from the file, so an API key cannot leak
through a log line.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tokenhub.types import ModelConfig, ProviderConfig

ProviderType = Literal["openai", "anthropic", "vllm", "mock"]


class CredentialsError(Exception):
    """The credentials file is unsafe or invalid; the message says where and how to fix it."""


@dataclass(slots=True)
class CredentialsFile:
    """What a credentials file declares. ``api_keys`` maps provider id to its key."""

    providers: list[ProviderConfig] = field(default_factory=list)
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    models: list[ModelConfig] = field(default_factory=list)


class _Entry(BaseModel):
    # strict: JSON types must match ("5" is not a weight); forbid: typos are errors.
    model_config = ConfigDict(strict=True, extra="forbid")


E = TypeVar("E", bound=_Entry)


class _Provider(_Entry):
    id: str = Field(min_length=1)
    type: ProviderType
    base_url: str | list[str] | None = None
    api_key: str | None = Field(default=None, min_length=1)
    enabled: bool = True
    autoload_models: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, v: object) -> object:
        # One clear message instead of pydantic's per-union-branch errors.
        if v is None:
            return v
        urls = [v] if isinstance(v, str) else v
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ValueError("must be a URL string or a list of URL strings")
        if not all(u.startswith(("http://", "https://")) for u in urls):
            raise ValueError("every URL must start with http:// or https://")
        return v

    @model_validator(mode="after")
    def _url_needed(self) -> _Provider:
        if self.type != "mock" and not self.base_urls():
            raise ValueError(f"field 'base_url': required for type {self.type!r}")
        return self

    def base_urls(self) -> list[str]:
        if isinstance(self.base_url, str):
            return [self.base_url]
        return list(self.base_url or [])


class _Model(_Entry):
    id: str = Field(min_length=1)
    provider_id: str = Field(min_length=1)
    weight: int = Field(ge=0, le=10)
    max_context_tokens: int = Field(gt=0)
    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)
    enabled: bool = True
    upstream_id: str | None = Field(default=None, min_length=1)
    labels: dict[str, Any] = Field(default_factory=dict)


def load_credentials_file(path: Path) -> CredentialsFile | None:
    """Read and validate the credentials file at ``path``; None when it does not exist.

    Raises ``CredentialsError`` when the file is readable by group or others, is not
    valid JSON, or holds an invalid entry.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        raise CredentialsError(f"credentials file {path} is not a regular file")
    if mode & 0o077:
        raise CredentialsError(
            f"credentials file {path} is accessible by other users "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    return parse_credentials(_read_json(path), source=str(path))


def parse_credentials(doc: Any, *, source: str = "credentials") -> CredentialsFile:
    """Validate an already-decoded credentials document (see the module docstring)."""
    if not isinstance(doc, dict):
        raise CredentialsError(f"{source}: expected a JSON object at the top level")
    unknown = sorted(set(doc) - {"providers", "models"})
    if unknown:
        raise CredentialsError(f"{source}: unknown top-level key(s): {', '.join(unknown)}")
    provs = [
        _entry(_Provider, e, source, "providers", i) for i, e in _items(doc, "providers", source)
    ]
    models = [_entry(_Model, e, source, "models", i) for i, e in _items(doc, "models", source)]
    _check_references(provs, models, source)
    return CredentialsFile(
        providers=[_provider_config(p) for p in provs],
        api_keys={p.id: p.api_key for p in provs if p.api_key},
        models=[_model_config(m) for m in models],
    )


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            f"cannot read credentials file {path}: {type(exc).__name__}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only; the offending text is never quoted.
        raise CredentialsError(
            f"credentials file {path} is not valid JSON: {exc.msg} "
            f"at line {exc.lineno} column {exc.colno}"
        ) from None


def _items(doc: dict[str, Any], key: str, source: str) -> list[tuple[int, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise CredentialsError(f"{source}: {key!r} must be a JSON array")
    return list(enumerate(value))


def _entry(cls: type[E], raw: Any, source: str, section: str, index: int) -> E:
    where = _describe(raw, section, index)
    if not isinstance(raw, dict):
        raise CredentialsError(f"{source}: {where} must be a JSON object")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise CredentialsError(f"{source}: {where}: {_first_problem(exc)}") from None


def _describe(raw: Any, section: str, index: int) -> str:
    entry_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(entry_id, str) and entry_id:
        return f"{section}[{index}] (id {entry_id!r})"
    return f"{section}[{index}]"


def _first_problem(exc: ValidationError) -> str:
    # Built from loc and msg only: pydantic's str(exc) would echo the input value,
    # which may be an API key.
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"field {loc!r}: {msg}" if loc else msg


def _check_references(provs: list[_Provider], models: list[_Model], source: str) -> None:
    _check_unique([p.id for p in provs], "providers", source)
    _check_unique([m.id for m in models], "models", source)
    known = {p.id for p in provs}
    for i, m in enumerate(models):
        if m.provider_id not in known:
            raise CredentialsError(
                f"{source}: models[{i}] (id {m.id!r}): field 'provider_id': "
                f"no provider with id {m.provider_id!r} in this file"
            )


def _check_unique(ids: list[str], section: str, source: str) -> None:
    seen: set[str] = set()
    for i, entry_id in enumerate(ids):
        if entry_id in seen:
            raise CredentialsError(f"{source}: {section}[{i}]: duplicate id {entry_id!r}")
        seen.add(entry_id)


def _provider_config(p: _Provider) -> ProviderConfig:
    return ProviderConfig(
        id=p.id,
        type=p.type,
        base_urls=p.base_urls(),
        enabled=p.enabled,
        options=dict(p.options),
        autoload_models=p.autoload_models,
    )


def _model_config(m: _Model) -> ModelConfig:
    return ModelConfig(
        id=m.id,
        provider_id=m.provider_id,
        weight=m.weight,
        max_context_tokens=m.max_context_tokens,
        input_per_1k=m.input_per_1k,
        output_per_1k=m.output_per_1k,
        enabled=m.enabled,
        upstream_id=m.upstream_id,
        labels=dict(m.labels),
    )
