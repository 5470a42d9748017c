"""The redactor masks every secret, raw and encoded."""

from apiauth.engine.config import AuthConfig, TokenSet
from apiauth.engine.redact import MASK, Redactor


def test_masks_every_secret_raw_and_url_encoded():
    redactor = Redactor(["s3cret/+&", "", "tok"])
    text = "a s3cret/+& b s3cret%2F%2B%26 c s3cret%2F%2B%26 d tok e"
    assert redactor.redact(text) == f"a {MASK} b {MASK} c {MASK} d {MASK} e"


def test_a_secret_containing_another_is_masked_whole():
    assert Redactor(["abc", "abcdef"]).redact("xabcdefx") == f"x{MASK}x"


def test_without_secrets_text_is_unchanged():
    assert Redactor([]).redact("nothing to hide") == "nothing to hide"


def test_for_config_covers_secrets_tokens_and_basic_credentials():
    config = AuthConfig(method="basic", username="user", password="pw-canary")
    redactor = Redactor.for_config(config, TokenSet(access_token="at-canary", refresh_token="rt-canary"), None)
    text = "Authorization: Basic dXNlcjpwdy1jYW5hcnk= pw-canary at-canary rt-canary"
    assert redactor.redact(text) == f"Authorization: Basic {MASK} {MASK} {MASK} {MASK}"


def test_for_config_covers_the_client_basic_credentials():
    config = AuthConfig(method="oauth2", client_id="my client", client_secret="cs-canary")
    # base64 of the URL-encoded pair "my%20client:cs-canary"
    assert Redactor.for_config(config).redact("Basic bXklMjBjbGllbnQ6Y3MtY2FuYXJ5") == f"Basic {MASK}"
