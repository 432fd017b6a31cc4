"""How ``tokenhubctl`` prints: rich tables for people, raw JSON (``--json``) for scripts.

Values are wrapped in ``rich.text.Text`` so ids like ``[beta]`` are never read as markup.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tokenhub.cli.client import Client, Connection

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the server's raw JSON answer (for scripts).")
]


class Output:
    """Prints one command's result as a table or, with ``--json``, as raw JSON."""

    def __init__(self, as_json: bool, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(highlight=False, soft_wrap=False)

    def raw(self, data: Any) -> None:
        """The JSON answer, indented, on stdout."""
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()

    def rows(
        self, data: Any, items: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str
    ) -> None:
        """``items`` as a table with ``columns`` (or ``data`` as JSON)."""
        if self.as_json:
            self.raw(data)
            return
        if not items:
            self.console.print(Text(f"no {title}"))
            return
        table = Table(title=title, title_justify="left")
        for col in columns:
            table.add_column(col)
        for item in items:
            table.add_row(*(Text(cell(item.get(col))) for col in columns))
        self.console.print(table)

    def fields(self, data: Any, mapping: Mapping[str, Any] | None = None, title: str = "") -> None:
        """A two-column key/value table of ``mapping`` (default: ``data``)."""
        if self.as_json:
            self.raw(data)
            return
        table = Table(title=title or None, title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in (mapping if mapping is not None else data).items():
            table.add_row(Text(str(key)), Text(cell(value)))
        self.console.print(table)

    def done(self, data: Any, message: str) -> None:
        """A one-line confirmation (or the JSON answer)."""
        if self.as_json:
            self.raw(data)
        else:
            self.console.print(Text(message))


def cell(value: Any) -> str:
    """A value as table text: lists joined, dicts as compact JSON, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def when(ts: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC time (seconds precision)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def with_times(items: Iterable[Mapping[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Copies of ``items`` with the epoch fields ``keys`` shown as ISO times."""
    return [{**item, **{k: when(item.get(k)) for k in keys}} for item in items]


def connect(ctx: typer.Context) -> Client:
    """The admin client for this invocation, closed when the command ends."""
    conn = ctx.find_root().obj
    if not isinstance(conn, Connection):
        conn = Connection()
    client = Client(conn)
    ctx.call_on_close(client.close)
    return client
