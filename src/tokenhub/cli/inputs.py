"""Inputs of ``tokenhubctl``: JSON bodies (inline, ``@file`` or ``-`` for stdin), flag
overrides, ``key=value`` pairs and passwords prompted without echo."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import typer

from tokenhub.cli.client import CliError

SPEC_HELP = "JSON object: inline, @FILE, or - to read stdin. Flags override its fields."
PASSWORD_NOTE = (
    "Prompted without echo when omitted; a password given on the command line is "
    "visible to other users in the process list."
)


def load_spec(spec: str | None) -> dict[str, Any]:
    """The JSON object ``spec`` names (inline text, ``@path`` or ``-``), or ``{}``."""
    if spec is None:
        return {}
    text = _spec_text(spec)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"invalid JSON in {_where(spec)}: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"expected a JSON object in {_where(spec)}")
    return value


def _spec_text(spec: str) -> str:
    if spec == "-":
        return sys.stdin.read()
    if spec.startswith("@"):
        try:
            return Path(spec[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {spec[1:]}: {exc.strerror}") from None
    return spec


def _where(spec: str) -> str:
    return "stdin" if spec == "-" else spec[1:] if spec.startswith("@") else "the argument"


def body_of(spec: str | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON spec with every flag that was given (not None) laid over it."""
    body = load_spec(spec)
    body.update({k: v for k, v in flags.items() if v is not None})
    if not body:
        raise CliError("nothing to send: give a JSON spec or at least one flag")
    return body


def pairs(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; each value is JSON when it parses, else a plain string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[key] = raw
    return out


def password(given: str | None, prompt: str, confirm: bool = False) -> str:
    """``given``, or a password read without echo (asked twice when ``confirm``)."""
    if given is not None:
        return given
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value
