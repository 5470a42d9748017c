"""Mask secrets in text before it is shown or logged."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from .apply import basic_credentials, client_basic_credentials
from .config import AuthConfig, TokenSet

MASK = "[redacted]"


def _forms(secret: str) -> set[str]:
    """Return a secret as written raw and URL-encoded."""
    return {secret, quote(secret, safe=""), quote_plus(secret)}


class Redactor:
    """Replace every known secret in text by a fixed mask."""

    def __init__(self, secrets: Iterable[str]):
        forms = {form for secret in secrets if secret for form in _forms(secret)}
        # Longest first, so that a secret containing another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def for_config(cls, config: AuthConfig, *tokensets: TokenSet | None) -> Redactor:
        """Return a redactor for an authenticator's secrets, tokens and Basic credentials."""
        secrets = [*config.secrets(), *(secret for t in tokensets if t for secret in t.secrets())]
        if config.method == "basic":
            secrets.append(basic_credentials(config.username, config.password))
        if config.client_secret:
            secrets.append(client_basic_credentials(config.client_id, config.client_secret))
        return cls(secrets)

    def redact(self, text: str) -> str:
        """Return text with every secret replaced by the mask."""
        return self._pattern.sub(MASK, text) if self._pattern else text
