"""The decrypted configuration of an authenticator and the tokens it holds."""

from __future__ import annotations

from dataclasses import dataclass

LOGIN_GRANT_TYPES = ("authorization_code", "authorization_code_pkce")


@dataclass(frozen=True)
class Condition:
    """A failure rule: authentication has failed when the response matches it."""

    source: str
    operator: str
    value: str
    name: str = ""


@dataclass(frozen=True)
class AuthConfig:
    """The decrypted configuration of one authenticator."""

    method: str
    key: str = ""
    value: str = ""
    add_to: str = "header"
    username: str = ""
    password: str = ""
    grant_type: str = "client_credentials"
    access_token_url: str = ""
    auth_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    scope: str = ""
    client_authentication: str = "basic_header"
    code_challenge_method: str = "S256"
    audience: str = ""
    resource: str = ""
    extra_auth_params: tuple[tuple[str, str], ...] = ()
    extra_token_params: tuple[tuple[str, str], ...] = ()
    token_prefix: str = "Bearer"
    conditions: tuple[Condition, ...] = ()

    def secrets(self) -> list[str]:
        """Return every secret value that is set, for redaction."""
        return [secret for secret in (self.value, self.password, self.client_secret) if secret]

    def extra_params(self, request: str) -> list[tuple[str, str]]:
        """Return audience, resource and the extra parameters of the "authorization" or "token" request."""
        extra = self.extra_auth_params if request == "authorization" else self.extra_token_params
        pairs = [("audience", self.audience), ("resource", self.resource), *extra]
        return [(name, value) for name, value in pairs if name and value]

    @property
    def needs_login(self) -> bool:
        """Return whether tokens come only from an admin's login (authorization-code grants)."""
        return self.method == "oauth2" and self.grant_type in LOGIN_GRANT_TYPES


@dataclass(frozen=True)
class TokenSet:
    """Tokens issued by an authorization server; times are epoch seconds."""

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = None
    scope: str = ""
    obtained_at: float = 0.0

    def secrets(self) -> list[str]:
        """Return the token values, for redaction."""
        return [token for token in (self.access_token, self.refresh_token) if token]
