"""Test an authenticator: get a token if needed, send one request, judge the response."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import requests

from .apply import apply_credentials
from .conditions import judge
from .config import AuthConfig, TokenSet
from .outbound import OutboundError, OutboundPolicy, send
from .redact import Redactor
from .tokens import TokenError, ensure_token

MAX_BODY_CHARS = 20_000
TokenSource = Callable[[Callable[[str], None]], TokenSet]


@dataclass(frozen=True)
class TestRequest:
    """The request an admin asks a test to send."""

    __test__ = False  # not a pytest test class

    method: str = "GET"
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""


@dataclass(frozen=True)
class TestOutcome:
    """What a test found, every text already redacted; tokenset is what the caller should store."""

    __test__ = False  # not a pytest test class

    succeeded: bool
    reason: str | None
    status_code: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: str = ""
    body_truncated: bool = False
    log: list[str] = field(default_factory=list)
    tokenset: TokenSet | None = None


def response_text(response: requests.Response) -> str:
    """Return the response body as text, in its declared charset or else UTF-8."""
    try:
        return response.content.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:
        return response.content.decode("utf-8", errors="replace")


def _exchange(
    config: AuthConfig,
    tokenset: TokenSet | None,
    request: TestRequest,
    policy: OutboundPolicy,
    log: list[str],
) -> TestOutcome:
    """Send the test request with credentials and judge the response."""
    url, headers = apply_credentials(config, tokenset, request.url, request.headers)
    names = ", ".join(headers) or "none"
    log.append(f"request sent: {request.method} {url} (headers: {names})")
    started = time.monotonic()
    try:
        response = send(policy, request.method, url, headers=headers, body=request.body)
    except OutboundError as error:
        log.append(f"request failed: {error.reason}")
        return TestOutcome(succeeded=False, reason=error.reason, tokenset=tokenset)
    elapsed = round((time.monotonic() - started) * 1000)
    body = response_text(response)
    size = len(response.content)
    log.append(f"response: {response.status_code} {response.reason} in {elapsed} ms, {size} bytes")
    reason = judge(config.conditions, response.status_code, response.headers, body)
    log.append(f"judgment: failed: {reason}" if reason else "judgment: succeeded")
    return TestOutcome(
        succeeded=reason is None,
        reason=reason,
        status_code=response.status_code,
        response_headers=list(response.headers.items()),
        response_body=body,
        tokenset=tokenset,
    )


def _run(
    config: AuthConfig, token_source: TokenSource, request: TestRequest, policy: OutboundPolicy
) -> TestOutcome:
    """Run the test and return its unredacted outcome; the log is filled as steps happen."""
    log: list[str] = []
    tokenset = None
    if config.method == "oauth2":
        try:
            tokenset = token_source(log.append)
        except TokenError as error:
            return TestOutcome(succeeded=False, reason=error.reason, log=log)
        if not request.url:
            log.append("judgment: succeeded: a token was issued (no request URL to try it on)")
            return TestOutcome(succeeded=True, reason=None, log=log, tokenset=tokenset)
    return replace(_exchange(config, tokenset, request, policy, log), log=log)


def _redacted(outcome: TestOutcome, redactor: Redactor) -> TestOutcome:
    """Return the outcome with every text redacted and the body cut to size."""
    body = redactor.redact(outcome.response_body)
    return replace(
        outcome,
        reason=outcome.reason and redactor.redact(outcome.reason),
        response_headers=[(name, redactor.redact(value)) for name, value in outcome.response_headers],
        response_body=body[:MAX_BODY_CHARS],
        body_truncated=len(body) > MAX_BODY_CHARS,
        log=[redactor.redact(line) for line in outcome.log],
    )


def run_test(
    config: AuthConfig,
    current_tokenset: TokenSet | None,
    request: TestRequest,
    policy: OutboundPolicy,
    token_source: TokenSource | None = None,
) -> TestOutcome:
    """Test an authenticator with one request and return the redacted outcome.

    OAuth tokens come from token_source(log) when given (the caller's store, which may
    refresh and persist them), else from ensure_token on current_tokenset.
    """
    if token_source is None:
        token_source = lambda log: ensure_token(config, current_tokenset, policy, log)  # noqa: E731
    outcome = _run(config, token_source, request, policy)
    return _redacted(outcome, Redactor.for_config(config, current_tokenset, outcome.tokenset))
