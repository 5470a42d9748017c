"""Credentials land on the request where the authenticator says."""

import base64

import pytest

from apiauth.engine.apply import apply_credentials, credentials_for
from apiauth.engine.config import AuthConfig, TokenSet


def test_api_key_in_a_header():
    config = AuthConfig(method="api_key", key="X-API-Key", value="k-123", add_to="header")
    url, headers = apply_credentials(config, None, "https://api.test/v1", {"Accept": "application/json"})
    assert url == "https://api.test/v1"
    assert headers == {"Accept": "application/json", "X-API-Key": "k-123"}


def test_api_key_header_replaces_a_header_of_the_same_name_in_any_case():
    config = AuthConfig(method="api_key", key="X-API-Key", value="k-123")
    _, headers = apply_credentials(config, None, "https://api.test/", [("x-api-key", "old"), ("A", "1")])
    assert headers == {"A": "1", "X-API-Key": "k-123"}


def test_api_key_in_the_query():
    config = AuthConfig(method="api_key", key="api_key", value="k 1&2", add_to="query")
    url, headers = apply_credentials(config, None, "https://api.test/v1?page=2#top", {})
    assert url == "https://api.test/v1?page=2&api_key=k+1%262#top"
    assert headers == {}


def test_api_key_in_the_query_replaces_an_existing_parameter_not_duplicates_it():
    config = AuthConfig(method="api_key", key="api_key", value="new", add_to="query")
    url, _ = apply_credentials(config, None, "https://api.test/?api_key=old&q=a%20b&api_key=older", {})
    assert url == "https://api.test/?q=a%20b&api_key=new"


def test_basic_auth_encodes_user_and_password_as_utf8():
    config = AuthConfig(method="basic", username="jürgen", password="pässwörd:€")
    credentials = credentials_for(config)
    scheme, encoded = credentials.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode("utf-8") == "jürgen:pässwörd:€"
    assert credentials.query == {}


def test_oauth_puts_the_token_behind_its_prefix():
    tokens = TokenSet(access_token="at-1")
    assert credentials_for(AuthConfig(method="oauth2"), tokens).headers == {"Authorization": "Bearer at-1"}
    custom = AuthConfig(method="oauth2", token_prefix="Token")
    assert credentials_for(custom, tokens).headers == {"Authorization": "Token at-1"}
    bare = AuthConfig(method="oauth2", token_prefix="")
    assert credentials_for(bare, tokens).headers == {"Authorization": "at-1"}


def test_oauth_without_a_token_has_no_credentials():
    with pytest.raises(ValueError):
        credentials_for(AuthConfig(method="oauth2"), None)
