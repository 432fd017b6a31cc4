"""The admin API over HTTP for ``tokenhubctl``, with failures translated to one line.

Every failure becomes a :class:`CliError` whose message is what the operator reads:
a rejected token says how to get the right one, a refused connection names the URL
tried, and any other 4xx/5xx carries the server's own error message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
ADMIN = "/admin/v1"
TOKEN_HINT = (
    "set TOKENHUB_ADMIN_TOKEN (or --token); `tokenhubctl admin-token` prints the token "
    "the server wrote to its data dir"
)


class CliError(Exception):
    """A failure reported as one line on stderr with a non-zero exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to authenticate (from flags or the environment)."""

    url: str = DEFAULT_URL
    token: str | None = None
    timeout: float = 30.0


def segment(value: str) -> str:
    """An id as a path segment; slashes stay (model ids contain them)."""
    return quote(value, safe="/:@")


class Client:
    """One method per HTTP verb on the admin API; answers are decoded JSON."""

    def __init__(self, conn: Connection) -> None:
        self.url = conn.url.rstrip("/")
        headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=conn.timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        """Send one request; statuses in ``accept`` count as success besides 2xx."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        with translate(self.url):
            r = self._http.request(method, path, json=body, params=query)
        if r.is_success or r.status_code in accept:
            return r.json() if r.content else {}
        raise http_error(r)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """The lines of a streamed answer (Server-Sent Events), without a read timeout."""
        query = {k: v for k, v in params.items() if v is not None}
        timeout = httpx.Timeout(10.0, read=None)
        with (
            translate(self.url),
            self._http.stream("GET", path, params=query, timeout=timeout) as r,
        ):
            if not r.is_success:
                r.read()
                raise http_error(r)
            yield from r.iter_lines()


@contextmanager
def translate(url: str) -> Iterator[None]:
    """Turn transport errors into a CliError naming the URL tried."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise CliError(
            f"cannot connect to {url}: the server may not be running (set TOKENHUB_URL or --url)"
        ) from exc
    except httpx.TimeoutException as exc:
        raise CliError(f"no answer from {url} in time") from exc
    except httpx.HTTPError as exc:
        raise CliError(f"HTTP error talking to {url}: {exc}") from exc


def http_error(r: httpx.Response) -> CliError:
    """The one line for a failed answer: 401 explains the token, others quote the server."""
    if r.status_code == 401:
        return CliError(f"401 unauthorized: the admin token was rejected or missing; {TOKEN_HINT}")
    return CliError(f"{r.status_code}: {server_message(r)}")


def server_message(r: httpx.Response) -> str:
    """The server's error message from ``{"error": {"message"}}``, ``detail`` or the text."""
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:300] or r.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("detail"):
            return str(body["detail"])
    return str(body)[:300]
