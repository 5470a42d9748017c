"""Starting a login: the authorization URL with state, PKCE and extra parameters."""

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

from apiauth.engine.config import AuthConfig
from apiauth.engine.login import start_login

REDIRECT_URI = "http://127.0.0.1:5000/oauth/callback"


def _config(**fields):
    defaults = {
        "method": "oauth2",
        "grant_type": "authorization_code_pkce",
        "auth_url": "https://login.test/authorize?tenant=acme",
        "client_id": "my-client",
        "scope": "openid offline_access",
    }
    return AuthConfig(**{**defaults, **fields})


def _query(url):
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_a_pkce_login_carries_an_s256_challenge_of_its_verifier():
    login = start_login(_config(), REDIRECT_URI)
    query = _query(login.url)
    digest = hashlib.sha256(login.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert query["code_challenge_method"] == "S256"
    assert 43 <= len(login.code_verifier) <= 128
    assert query["state"] == login.state
    assert query["response_type"] == "code"
    assert query["client_id"] == "my-client"
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["scope"] == "openid offline_access"
    assert query["tenant"] == "acme"
    assert login.url.startswith("https://login.test/authorize?")


def test_a_plain_pkce_login_sends_the_verifier_as_challenge():
    login = start_login(_config(code_challenge_method="plain"), REDIRECT_URI)
    query = _query(login.url)
    assert (query["code_challenge"], query["code_challenge_method"]) == (login.code_verifier, "plain")


def test_a_login_without_pkce_has_no_challenge():
    login = start_login(_config(grant_type="authorization_code"), REDIRECT_URI)
    assert login.code_verifier == ""
    assert "code_challenge" not in _query(login.url)


def test_every_login_has_a_new_state_and_verifier():
    first, second = start_login(_config(), REDIRECT_URI), start_login(_config(), REDIRECT_URI)
    assert first.state != second.state
    assert first.code_verifier != second.code_verifier


def test_audience_resource_and_extra_parameters_are_added():
    config = _config(
        audience="https://api.test", resource="https://api.test/v1", extra_auth_params=(("prompt", "consent"),)
    )
    query = parse_qs(urlsplit(start_login(config, REDIRECT_URI).url).query)
    assert query["audience"] == ["https://api.test"]
    assert query["resource"] == ["https://api.test/v1"]
    assert query["prompt"] == ["consent"]


def test_an_extra_parameter_never_repeats_one_the_protocol_set():
    config = _config(extra_auth_params=(("state", "mine"), ("client_id", "other"), ("prompt", "login")))
    login = start_login(config, REDIRECT_URI)
    query = parse_qs(urlsplit(login.url).query)
    assert query["state"] == [login.state]
    assert query["client_id"] == ["my-client"]
    assert query["prompt"] == ["login"]
