"""Testing an authenticator: token, request, judgment, a redacted step log."""

import base64
import json
from urllib.parse import quote_plus

from werkzeug import Response

from apiauth.engine.config import AuthConfig, Condition, TokenSet
from apiauth.engine.testing import MAX_BODY_CHARS, TestRequest, run_test

API_KEY = "api-key-canary-51c2"
PASSWORD = "basic-pass-canary-9e0d"
CLIENT_SECRET = "client-secret-canary-4b7a"
ACCESS_TOKEN = "access-token-canary-d3e8"
TOKEN = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}


def _echo(request):
    """Answer with everything the request carried, as a careless API might."""
    echoed = {"headers": dict(request.headers), "args": request.args.to_dict(), "url": request.url}
    return Response(json.dumps(echoed), headers={"X-Echo": request.headers.get("Authorization", "")})


def _api_key(**fields):
    return AuthConfig(method="api_key", key="X-API-Key", value=API_KEY, **fields)


def _oauth(fault_server, **fields):
    defaults = {
        "method": "oauth2",
        "access_token_url": fault_server.url_for("/token"),
        "client_id": "my-client",
        "client_secret": CLIENT_SECRET,
    }
    return AuthConfig(**{**defaults, **fields})


def _everything(outcome):
    """Return every text of an outcome in one string."""
    return json.dumps([outcome.reason, outcome.response_headers, outcome.response_body, outcome.log])


def _assert_no_secret(outcome, *secrets):
    text = _everything(outcome)
    for secret in secrets:
        assert secret not in text
        assert quote_plus(secret) not in text
        assert base64.b64encode(secret.encode()).decode()[:12] not in text


def test_an_accepted_api_key_succeeds(fault_server, policy):
    fault_server.expect_request("/me", headers={"X-API-Key": API_KEY}).respond_with_json({"name": "acme"})
    outcome = run_test(_api_key(), None, TestRequest("GET", fault_server.url_for("/me")), policy)
    assert outcome.succeeded
    assert outcome.reason is None
    assert outcome.status_code == 200
    assert json.loads(outcome.response_body) == {"name": "acme"}
    assert ("Content-Type", "application/json") in outcome.response_headers
    assert outcome.tokenset is None
    assert outcome.log[0] == f"request sent: GET {fault_server.url_for('/me')} (headers: X-API-Key)"
    assert outcome.log[1].startswith("response: 200 OK in ")
    assert outcome.log[2] == "judgment: succeeded"


def test_a_rejected_api_key_fails_with_the_status(fault_server, policy):
    fault_server.expect_request("/me").respond_with_data("nope", status=401)
    outcome = run_test(_api_key(), None, TestRequest("GET", fault_server.url_for("/me")), policy)
    assert not outcome.succeeded
    assert outcome.reason == "http_401"
    assert outcome.log[-1] == "judgment: failed: http_401"


def test_a_failure_condition_names_the_rule(fault_server, policy):
    fault_server.expect_request("/me").respond_with_data('{"status": "access denied"}')
    config = _api_key(conditions=(Condition("body", "contains", "denied"),))
    outcome = run_test(config, None, TestRequest("GET", fault_server.url_for("/me")), policy)
    assert (outcome.succeeded, outcome.reason) == (False, 'condition: body contains "denied"')
    assert outcome.status_code == 200


def test_method_headers_and_body_are_sent(fault_server, policy):
    fault_server.expect_request("/items", method="POST", data=b'{"a": 1}', headers={"X-Trace": "t1"}).respond_with_data(
        "created", status=201
    )
    request = TestRequest("POST", fault_server.url_for("/items"), [("X-Trace", "t1")], '{"a": 1}')
    assert run_test(_api_key(), None, request, policy).status_code == 201


def test_an_echoed_api_key_is_redacted_everywhere(fault_server, policy):
    fault_server.expect_request("/echo").respond_with_handler(_echo)
    for add_to in ("header", "query"):
        config = _api_key(add_to=add_to)
        outcome = run_test(config, None, TestRequest("GET", fault_server.url_for("/echo")), policy)
        assert outcome.succeeded
        assert "[redacted]" in outcome.response_body
        _assert_no_secret(outcome, API_KEY)


def test_echoed_basic_credentials_are_redacted_everywhere(fault_server, policy):
    fault_server.expect_request("/echo").respond_with_handler(_echo)
    config = AuthConfig(method="basic", username="user", password=PASSWORD)
    outcome = run_test(config, None, TestRequest("GET", fault_server.url_for("/echo")), policy)
    assert ("X-Echo", "Basic [redacted]") in outcome.response_headers
    _assert_no_secret(outcome, PASSWORD, f"user:{PASSWORD}")


def test_a_long_body_is_cut(fault_server, policy):
    fault_server.expect_request("/big").respond_with_data("x" * (MAX_BODY_CHARS + 5))
    outcome = run_test(_api_key(), None, TestRequest("GET", fault_server.url_for("/big")), policy)
    assert len(outcome.response_body) == MAX_BODY_CHARS
    assert outcome.body_truncated


def test_a_request_that_cannot_be_sent_fails_with_its_reason(policy):
    outcome = run_test(_api_key(), None, TestRequest("GET", "http://169.254.169.254/"), policy)
    assert (outcome.succeeded, outcome.reason, outcome.status_code) == (False, "blocked_address", None)
    assert outcome.log[-1] == "request failed: blocked_address"
    assert run_test(_api_key(), None, TestRequest("GET", ""), policy).reason == "invalid_url"


def test_oauth_without_a_url_only_checks_that_a_token_is_issued(fault_server, policy):
    fault_server.expect_request("/token", method="POST").respond_with_json(TOKEN)
    outcome = run_test(_oauth(fault_server), None, TestRequest("GET", ""), policy)
    assert outcome.succeeded
    assert outcome.tokenset.access_token == ACCESS_TOKEN
    assert outcome.status_code is None
    assert outcome.log[0].startswith("token request: POST")
    assert outcome.log[1].startswith("token obtained: expires in 3600 s")
    assert outcome.log[2].startswith("judgment: succeeded")
    _assert_no_secret(outcome, ACCESS_TOKEN, CLIENT_SECRET)


def test_oauth_sends_the_token_and_returns_it_to_store(fault_server, policy):
    fault_server.expect_request("/token", method="POST").respond_with_json(TOKEN)
    bearer = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    fault_server.expect_request("/echo", headers=bearer).respond_with_handler(_echo)
    outcome = run_test(_oauth(fault_server), None, TestRequest("GET", fault_server.url_for("/echo")), policy)
    assert outcome.succeeded
    assert outcome.tokenset.access_token == ACCESS_TOKEN
    assert ("X-Echo", "Bearer [redacted]") in outcome.response_headers
    _assert_no_secret(outcome, ACCESS_TOKEN, CLIENT_SECRET)


def test_oauth_reuses_a_valid_token(fault_server, policy):
    fault_server.expect_request("/api").respond_with_data("ok")
    current = TokenSet(ACCESS_TOKEN, obtained_at=9e9, expires_at=9e9 + 3600)
    outcome = run_test(_oauth(fault_server), current, TestRequest("GET", fault_server.url_for("/api")), policy)
    assert outcome.succeeded
    assert outcome.tokenset is current
    assert outcome.log[0].startswith("token reused: expires in")
    assert [request.path for request, _ in fault_server.log] == ["/api"]


def test_oauth_that_gets_no_token_fails_and_returns_no_tokens(fault_server, policy):
    fault_server.expect_request("/token", method="POST").respond_with_json(
        {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}, status=401
    )
    outcome = run_test(_oauth(fault_server), None, TestRequest("GET", fault_server.url_for("/api")), policy)
    assert (outcome.succeeded, outcome.reason, outcome.tokenset) == (False, "invalid_client", None)
    assert outcome.log[-1] == "token request failed: invalid_client (bad secret [redacted])"
    _assert_no_secret(outcome, CLIENT_SECRET)


def test_oauth_keeps_a_new_token_even_when_the_request_then_fails(fault_server, policy):
    fault_server.expect_request("/token", method="POST").respond_with_json(TOKEN)
    fault_server.expect_request("/api").respond_with_data("forbidden", status=403)
    outcome = run_test(_oauth(fault_server), None, TestRequest("GET", fault_server.url_for("/api")), policy)
    assert (outcome.succeeded, outcome.reason) == (False, "http_403")
    assert outcome.tokenset.access_token == ACCESS_TOKEN


def test_a_login_grant_without_tokens_needs_a_login(fault_server, policy):
    config = _oauth(fault_server, grant_type="authorization_code_pkce")
    outcome = run_test(config, None, TestRequest("GET", fault_server.url_for("/api")), policy)
    assert (outcome.succeeded, outcome.reason, outcome.tokenset) == (False, "need_login", None)
    assert fault_server.log == []
