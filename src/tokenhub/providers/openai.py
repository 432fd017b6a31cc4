"""The OpenAI adapter: the OpenAI-compatible base pointed at api.openai.com by default."""

from __future__ import annotations

from tokenhub.providers.openai_compat import OpenAICompatAdapter

DEFAULT_BASE_URL = "https://api.openai.com"


class OpenAIAdapter(OpenAICompatAdapter):
    """OpenAI's chat-completions API; needs an API key from the credential lookup."""

    def _pick_base(self) -> str:
        return self.config.base_url or DEFAULT_BASE_URL
