"""The vLLM adapter: OpenAI-compatible, spread over several endpoints with cooldowns."""

from __future__ import annotations

from tokenhub.errors import ProviderError
from tokenhub.providers.base import CredentialLookup
from tokenhub.providers.openai_compat import OpenAICompatAdapter
from tokenhub.types import Clock, ErrorClass, ProviderConfig, monotonic

DEFAULT_COOLDOWN_S = 30.0


class VLLMAdapter(OpenAICompatAdapter):
    """Round-robins calls over ``config.base_urls``.

    An endpoint whose call failed with a transient error (5xx, timeout, refused or
    dropped connection) is skipped for ``options["endpoint_cooldown_s"]`` seconds
    (default 30) by the injected clock. When every endpoint is cooling down, the one
    whose cooldown ends first is tried; a success ends its cooldown. Usually keyless:
    a key is sent only if the credential lookup has one.
    """

    def __init__(
        self, config: ProviderConfig, credentials: CredentialLookup, *, clock: Clock = monotonic
    ) -> None:
        super().__init__(config, credentials, clock=clock)
        self._cooldown_s = float(config.options.get("endpoint_cooldown_s", DEFAULT_COOLDOWN_S))
        self._next = 0
        self._cooling_until: dict[str, float] = {}

    def _pick_base(self) -> str:
        bases = self.config.base_urls
        if not bases:
            raise ProviderError(ErrorClass.FATAL, f"{self.config.id}: no base_urls configured")
        now = self._clock()
        for step in range(len(bases)):
            index = (self._next + step) % len(bases)
            if self._cooling_until.get(bases[index], now) <= now:
                self._next = index + 1
                return bases[index]
        return min(bases, key=lambda b: self._cooling_until[b])

    def _record(self, base: str, error: ProviderError | None) -> None:
        if error is None:
            self._cooling_until.pop(base, None)
        elif error.error_class == ErrorClass.TRANSIENT:
            self._cooling_until[base] = self._clock() + self._cooldown_s
