"""Token requests against a local fault server: client authentication, parameters and failures."""

import base64
import json
import time

import pytest
from werkzeug import Response

from apiauth.engine.config import AuthConfig, TokenSet
from apiauth.engine.outbound import OutboundPolicy, Retries
from apiauth.engine.tokens import (
    MAX_LIFETIME,
    TokenError,
    ensure_token,
    exchange_code,
    fetch_token,
    needs_renewal,
    refresh_token,
)

SECRET = "client-secret-canary-7f3a"
TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600, "scope": "api:read"}


def _discard(line):
    """Ignore a log line."""


def _json(payload, status=200, headers=None):
    """Return a JSON response."""
    return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")


def _answer(fault_server, *responses):
    """Answer the token endpoint with these responses in turn, repeating the last; return the requests."""
    queue = list(responses)
    handler = fault_server.expect_request("/token", method="POST")
    handler.respond_with_handler(lambda request: queue.pop(0) if len(queue) > 1 else queue[0])
    return lambda: [request for request, _ in fault_server.log]


def _config(fault_server, **fields):
    """Return an OAuth configuration whose token endpoint is the fault server."""
    defaults = {
        "method": "oauth2",
        "access_token_url": fault_server.url_for("/token"),
        "client_id": "my-client",
        "client_secret": SECRET,
        "scope": "api:read",
    }
    return AuthConfig(**{**defaults, **fields})


def _failure(call, *args):
    """Return the TokenError that a token call raises."""
    with pytest.raises(TokenError) as caught:
        call(*args)
    return caught.value


def test_client_credentials_with_the_secret_in_a_basic_header(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    log = []
    before = time.time()
    tokens = fetch_token(_config(fault_server), policy, log.append)
    assert tokens.access_token == "at-1"
    assert tokens.token_type == "Bearer"
    assert tokens.scope == "api:read"
    assert tokens.refresh_token is None
    assert before <= tokens.obtained_at <= time.time()
    assert tokens.expires_at == tokens.obtained_at + 3600
    (request,) = requests()
    assert request.form.to_dict() == {"grant_type": "client_credentials", "scope": "api:read"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"my-client:{SECRET}".encode()).decode()
    assert request.headers["Accept"] == "application/json"
    assert log[0].startswith(f"token request: POST {fault_server.url_for('/token')}")
    assert log[-1].startswith("token obtained: expires in 3600 s")


def test_client_id_and_secret_are_url_encoded_in_the_basic_header(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    fetch_token(_config(fault_server, client_id="id:1", client_secret="s€cret %"), policy, _discard)
    encoded = requests()[0].headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded).decode() == "id%3A1:s%E2%82%ACcret%20%25"


def test_client_credentials_with_the_secret_in_the_body(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    fetch_token(_config(fault_server, client_authentication="body"), policy, _discard)
    (request,) = requests()
    assert request.form["client_id"] == "my-client"
    assert request.form["client_secret"] == SECRET
    assert "Authorization" not in request.headers


def test_a_public_client_sends_only_its_id(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    fetch_token(_config(fault_server, client_authentication="none", client_secret=""), policy, _discard)
    (request,) = requests()
    assert request.form["client_id"] == "my-client"
    assert "client_secret" not in request.form
    assert "Authorization" not in request.headers


def test_audience_resource_and_extra_parameters_are_sent(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    config = _config(
        fault_server,
        audience="https://api.test",
        resource="https://api.test/v1",
        extra_token_params=(("tenant", "acme"), ("empty", "")),
    )
    fetch_token(config, policy, _discard)
    form = requests()[0].form
    assert form["audience"] == "https://api.test"
    assert form["resource"] == "https://api.test/v1"
    assert form["tenant"] == "acme"
    assert "empty" not in form


def test_password_grant_sends_the_user_credentials(fault_server, policy):
    requests = _answer(fault_server, _json({**TOKEN, "refresh_token": "rt-1"}))
    config = _config(fault_server, grant_type="password", username="alice", password="pässwörd")
    tokens = fetch_token(config, policy, _discard)
    assert tokens.refresh_token == "rt-1"
    form = requests()[0].form
    assert (form["grant_type"], form["username"], form["password"]) == ("password", "alice", "pässwörd")


def test_refresh_sends_the_refresh_token_and_keeps_it_when_no_new_one_comes(fault_server, policy):
    requests = _answer(fault_server, _json({**TOKEN, "access_token": "at-2"}))
    tokens = refresh_token(_config(fault_server), TokenSet("at-1", refresh_token="rt-1"), policy, _discard)
    assert (tokens.access_token, tokens.refresh_token) == ("at-2", "rt-1")
    form = requests()[0].form
    assert (form["grant_type"], form["refresh_token"]) == ("refresh_token", "rt-1")


def test_refresh_takes_a_new_refresh_token(fault_server, policy):
    _answer(fault_server, _json({**TOKEN, "refresh_token": "rt-2"}))
    tokens = refresh_token(_config(fault_server), TokenSet("at-1", refresh_token="rt-1"), policy, _discard)
    assert tokens.refresh_token == "rt-2"


def test_exchange_code_sends_the_code_redirect_uri_and_verifier(fault_server, policy):
    requests = _answer(fault_server, _json({**TOKEN, "refresh_token": "rt-1"}))
    config = _config(fault_server, grant_type="authorization_code_pkce")
    tokens = exchange_code(config, "code-1", "http://127.0.0.1/oauth/callback", "verifier-1", policy, _discard)
    assert tokens.refresh_token == "rt-1"
    form = requests()[0].form
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == "code-1"
    assert form["redirect_uri"] == "http://127.0.0.1/oauth/callback"
    assert form["code_verifier"] == "verifier-1"
    assert "scope" not in form


@pytest.mark.parametrize(
    "response, reason",
    [
        (_json({"error": "invalid_client"}), "invalid_client"),
        (_json({"error": "invalid_client", "error_description": "no such client"}, 401), "invalid_client"),
        (_json({"error": "invalid_scope"}, 400), "invalid_scope"),
        (_json({"error": "invalid_grant"}, 400), "invalid_grant"),
        (_json({"error": 42}), "invalid_token_response"),
        (Response("<html><body>Welcome</body></html>", content_type="text/html"), "invalid_token_response"),
        (Response('{"access_token": "at-1", "expi', content_type="application/json"), "invalid_token_response"),
        (
            Response("access_token=at-1&token_type=bearer", content_type="application/x-www-form-urlencoded"),
            "invalid_token_response",
        ),
        (_json({"token_type": "Bearer", "expires_in": 3600}), "invalid_token_response"),
        (_json({"access_token": ""}), "invalid_token_response"),
        (_json(["at-1"]), "invalid_token_response"),
        (Response("", status=204), "invalid_token_response"),
        (Response("<h1>Unauthorized</h1>", status=401, content_type="text/html"), "http_401"),
        (Response("", status=404), "http_404"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_failed_answer_names_its_reason(fault_server, policy, response, reason):
    requests = _answer(fault_server, response)
    assert _failure(fetch_token, _config(fault_server), policy, _discard).reason == reason
    assert len(requests()) == 1  # client errors are not retried


def test_an_error_description_is_kept(fault_server, policy):
    _answer(fault_server, _json({"error": "invalid_client", "error_description": "no such client"}, 401))
    error = _failure(fetch_token, _config(fault_server), policy, _discard)
    assert error.description == "no such client"


def test_an_echoed_secret_never_reaches_the_error_or_the_log(fault_server, policy):
    _answer(fault_server, _json({"error": SECRET, "error_description": f"secret {SECRET} is wrong"}, 401))
    log = []
    error = _failure(fetch_token, _config(fault_server), policy, log.append)
    assert SECRET not in f"{error} {error.reason} {error.description} {error.args} {log}"
    assert error.description == "secret [redacted] is wrong"


@pytest.mark.parametrize(
    "expires_in, lifetime",
    [
        (3600, 3600),
        ("120", 120),
        (90.5, 90.5),
        (0, 0),
        (-5, 0),
        (10**12, MAX_LIFETIME),
        (10**400, MAX_LIFETIME),
        ("soon", None),
        (None, None),
        (True, None),
        ({"seconds": 5}, None),
        ("missing", None),
    ],
)
def test_odd_expires_in_values_are_handled(fault_server, policy, expires_in, lifetime):
    payload = {"access_token": "at-1"}
    if expires_in != "missing":
        payload["expires_in"] = expires_in
    _answer(fault_server, Response(json.dumps(payload), content_type="application/json"))
    tokens = fetch_token(_config(fault_server), policy, _discard)
    if lifetime is None:
        assert tokens.expires_at is None
    else:
        assert tokens.expires_at == tokens.obtained_at + lifetime


def test_429_is_retried_after_the_time_retry_after_asks(fault_server, policy):
    requests = _answer(fault_server, Response("", status=429, headers={"Retry-After": "1"}), _json(TOKEN))
    log = []
    started = time.monotonic()
    assert fetch_token(_config(fault_server), policy, log.append).access_token == "at-1"
    assert time.monotonic() - started >= 1
    assert len(requests()) == 2
    assert "token endpoint answered 429; retrying in 1 s" in log


@pytest.mark.parametrize("retry_after", ["nan", "inf", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_an_odd_or_past_retry_after_still_retries(fault_server, policy, retry_after):
    requests = _answer(fault_server, Response("", status=429, headers={"Retry-After": retry_after}), _json(TOKEN))
    assert fetch_token(_config(fault_server), policy, _discard).access_token == "at-1"
    assert len(requests()) == 2


def test_429_that_never_ends_is_rate_limited(fault_server, policy):
    requests = _answer(fault_server, _json({"error": "slow_down"}, 429, {"Retry-After": "0"}))
    assert _failure(fetch_token, _config(fault_server), policy, _discard).reason == "rate_limited"
    assert len(requests()) == 3


def test_a_retry_after_beyond_the_time_budget_gives_up_at_once(fault_server, policy):
    requests = _answer(fault_server, Response("", status=429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    assert _failure(fetch_token, _config(fault_server), policy, _discard).reason == "rate_limited"
    assert time.monotonic() - started < 1
    assert len(requests()) == 1


@pytest.mark.parametrize(
    "response, reason",
    [
        (Response("Service Unavailable", status=503), "http_503"),
        (Response("<html>Bad gateway</html>", status=502, content_type="text/html"), "http_502"),
        (_json({"error": "server_error"}, 500), "server_error"),
        (_json({"error": "temporarily_unavailable"}, 503), "temporarily_unavailable"),
    ],
)
def test_server_errors_are_retried_then_named(fault_server, policy, response, reason):
    requests = _answer(fault_server, response)
    assert _failure(fetch_token, _config(fault_server), policy, _discard).reason == reason
    assert len(requests()) == 3


def test_a_server_error_that_passes_is_retried_to_success(fault_server, policy):
    requests = _answer(fault_server, Response("", status=503), _json(TOKEN))
    assert fetch_token(_config(fault_server), policy, _discard).access_token == "at-1"
    assert len(requests()) == 2


def test_retries_stop_within_the_time_budget(fault_server):
    requests = _answer(fault_server, Response("", status=503))
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"], retries=Retries(attempts=10, backoff=0.2, budget=0.5))
    started = time.monotonic()
    assert _failure(fetch_token, _config(fault_server), policy, _discard).reason == "http_503"
    assert time.monotonic() - started < 0.5
    assert len(requests()) == 2  # waits 0.2 s, then 0.4 s would pass the budget


def test_a_redirect_is_not_followed(fault_server, policy):
    fault_server.expect_request("/elsewhere").respond_with_json(TOKEN)
    requests = _answer(fault_server, Response("", status=302, headers={"Location": "/elsewhere"}))
    assert _failure(fetch_token, _config(fault_server), policy, _discard).reason == "http_302"
    assert [request.path for request in requests()] == ["/token"]


def test_transport_failures_name_their_reason(fault_server, policy):
    assert _failure(fetch_token, _config(fault_server, access_token_url=""), policy, _discard).reason == "invalid_url"
    assert _failure(fetch_token, _config(fault_server), OutboundPolicy(), _discard).reason == "blocked_address"


def test_a_token_endpoint_that_never_answers_times_out(silent_listener):
    port = silent_listener.getsockname()[1]
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"], read_timeout=0.2)
    config = AuthConfig(method="oauth2", access_token_url=f"http://127.0.0.1:{port}/token", client_id="c")
    assert _failure(fetch_token, config, policy, _discard).reason == "timeout"


def test_login_grants_cannot_fetch_a_token_without_a_login(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    config = _config(fault_server, grant_type="authorization_code")
    assert _failure(fetch_token, config, policy, _discard).reason == "need_login"
    assert requests() == []


@pytest.mark.parametrize(
    "lifetime, renew_before",
    [(3600, 60), (600, 60), (100, 10), (10, 1)],
)
def test_renewal_margin_is_a_minute_or_a_tenth_of_the_lifetime(lifetime, renew_before):
    tokens = TokenSet("at-1", obtained_at=1000.0, expires_at=1000.0 + lifetime)
    assert not needs_renewal(tokens, tokens.expires_at - renew_before - 0.01)
    assert needs_renewal(tokens, tokens.expires_at - renew_before)
    assert needs_renewal(tokens, tokens.expires_at + 1)


def test_a_token_of_unknown_expiry_never_needs_renewal():
    assert not needs_renewal(TokenSet("at-1", obtained_at=1000.0), 10**10)


def test_ensure_token_reuses_a_valid_token(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    current = TokenSet("at-0", obtained_at=1000.0, expires_at=4600.0)
    log = []
    assert ensure_token(_config(fault_server), current, policy, log.append, now=2000.0) is current
    assert requests() == []
    assert log == ["token reused: expires in 2600 s (1970-01-01 01:16:40 UTC)"]


def test_ensure_token_fetches_when_there_is_none(fault_server, policy):
    _answer(fault_server, _json(TOKEN))
    assert ensure_token(_config(fault_server), None, policy, _discard).access_token == "at-1"


def test_ensure_token_refreshes_an_expiring_token(fault_server, policy):
    requests = _answer(fault_server, _json({**TOKEN, "access_token": "at-2"}))
    current = TokenSet("at-1", refresh_token="rt-1", obtained_at=1000.0, expires_at=4600.0)
    tokens = ensure_token(_config(fault_server), current, policy, _discard, now=4590.0)
    assert (tokens.access_token, tokens.refresh_token) == ("at-2", "rt-1")
    assert requests()[0].form["grant_type"] == "refresh_token"


def test_ensure_token_fetches_anew_when_an_expired_token_has_no_refresh_token(fault_server, policy):
    requests = _answer(fault_server, _json(TOKEN))
    current = TokenSet("at-0", obtained_at=1000.0, expires_at=4600.0)
    assert ensure_token(_config(fault_server), current, policy, _discard, now=5000.0).access_token == "at-1"
    assert requests()[0].form["grant_type"] == "client_credentials"


def test_ensure_token_falls_back_to_a_new_token_when_refresh_fails(fault_server, policy):
    requests = _answer(fault_server, _json({"error": "invalid_grant"}, 400), _json(TOKEN))
    current = TokenSet("at-0", refresh_token="rt-0", obtained_at=1000.0, expires_at=4600.0)
    log = []
    assert ensure_token(_config(fault_server), current, policy, log.append, now=5000.0).access_token == "at-1"
    assert [request.form["grant_type"] for request in requests()] == ["refresh_token", "client_credentials"]
    assert "requesting a new token instead" in log


@pytest.mark.parametrize("grant_type", ["authorization_code", "authorization_code_pkce"])
def test_ensure_token_needs_a_login_when_a_login_grant_has_no_token(fault_server, policy, grant_type):
    requests = _answer(fault_server, _json(TOKEN))
    config = _config(fault_server, grant_type=grant_type)
    assert _failure(ensure_token, config, None, policy, _discard).reason == "need_login"
    expired = TokenSet("at-0", obtained_at=1000.0, expires_at=4600.0)
    assert _failure(ensure_token, config, expired, policy, _discard, 5000.0).reason == "need_login"
    assert requests() == []


def test_ensure_token_needs_a_login_when_the_refresh_token_is_rejected(fault_server, policy):
    _answer(fault_server, _json({"error": "invalid_grant"}, 400))
    config = _config(fault_server, grant_type="authorization_code")
    current = TokenSet("at-0", refresh_token="rt-0", obtained_at=1000.0, expires_at=4600.0)
    assert _failure(ensure_token, config, current, policy, _discard, 5000.0).reason == "need_login"


def test_ensure_token_keeps_other_refresh_failures_of_a_login_grant(fault_server, policy):
    _answer(fault_server, _json({"error": "server_error"}, 500))
    config = _config(fault_server, grant_type="authorization_code")
    current = TokenSet("at-0", refresh_token="rt-0", obtained_at=1000.0, expires_at=4600.0)
    assert _failure(ensure_token, config, current, policy, _discard, 5000.0).reason == "server_error"
