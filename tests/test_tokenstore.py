"""One token request per expiry, however many callers need the token at once."""

import threading
import time

import pytest
from sqlalchemy import update

from apiauth.authentication import engine_config, outbound_policy
from apiauth.engine.tokens import TokenError
from apiauth.extensions import db
from apiauth.models import TokenState
from apiauth.tokenstore import load_tokens, store_tokens, usable_tokens

pytestmark = pytest.mark.oidc
# Token lifetime: long enough that a burst on a loaded machine ends before the next renewal.
TTL = 4


@pytest.fixture
def short_lived_provider(oidc_provider_factory):
    """An oidc-provider whose tokens live a few seconds."""
    return oidc_provider_factory(client_credentials_ttl=TTL, access_token_ttl=TTL)


@pytest.fixture
def oauth_authenticator(make_authenticator, short_lived_provider):
    return make_authenticator(
        "OIDC", method="oauth2", grant_type="client_credentials", access_token_url=short_lived_provider.token_endpoint,
        client_id="basic-client", client_authentication="basic_header", secrets={"client_secret": "basic-secret"},
    )


def get_tokens(app, authenticator_id, results, errors, barrier=None):
    """What one worker thread does: wait for the others, then ask for usable tokens."""
    from apiauth.models import Authenticator

    with app.app_context():
        authenticator = db.session.get(Authenticator, authenticator_id)
        config = engine_config(authenticator)
        db.session.commit()  # hold no connection while waiting for the others, as a request wouldn't
        if barrier:
            barrier.wait(timeout=10)
        try:
            results.append(usable_tokens(authenticator, config, outbound_policy(), lambda message: None))
        except TokenError as error:
            errors.append(error.reason)
        finally:
            db.session.remove()


def burst(app, authenticator, count):
    results, errors = [], []
    barrier = threading.Barrier(count)
    threads = [threading.Thread(target=get_tokens, args=(app, authenticator.id, results, errors, barrier))
               for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results, errors


def test_threads_share_one_token_request(app, oauth_authenticator, short_lived_provider):
    short_lived_provider.reset_stats()
    results, errors = burst(app, oauth_authenticator, 16)
    assert errors == []
    assert short_lived_provider.token_requests() == 1
    assert len({tokens.access_token for tokens in results}) == 1


def test_at_expiry_threads_share_one_renewal(app, oauth_authenticator, short_lived_provider):
    burst(app, oauth_authenticator, 4)
    time.sleep(TTL + 0.1)
    short_lived_provider.reset_stats()
    results, errors = burst(app, oauth_authenticator, 16)
    assert errors == [] and short_lived_provider.token_requests() == 1
    assert len({tokens.access_token for tokens in results}) == 1


def test_a_lease_whose_holder_died_is_taken_over_after_it_expires(app, oauth_authenticator, short_lived_provider):
    app.config["TOKEN_LEASE_SECONDS"] = 1.0
    store_tokens(oauth_authenticator, None)
    db.session.execute(update(TokenState).values(lease_holder="dead-worker", lease_until=time.time() + 1.0))
    db.session.commit()
    short_lived_provider.reset_stats()
    started = time.time()
    results, errors = [], []
    get_tokens(app, oauth_authenticator.id, results, errors)
    assert errors == [] and len(results) == 1
    assert time.time() - started >= 0.9
    assert short_lived_provider.token_requests() == 1


def test_a_stale_holder_cannot_overwrite_newer_tokens(app, oauth_authenticator):
    from apiauth.engine.config import TokenSet

    store_tokens(oauth_authenticator, TokenSet("first", expires_at=time.time() + 60, obtained_at=time.time()))
    db.session.commit()
    generation = db.session.get(TokenState, oauth_authenticator.id, populate_existing=True).generation
    store_tokens(oauth_authenticator, TokenSet("newer", expires_at=time.time() + 60, obtained_at=time.time()),
                 expected_generation=generation)
    db.session.commit()
    landed = store_tokens(oauth_authenticator, TokenSet("stale", expires_at=time.time() + 60, obtained_at=time.time()),
                          expected_generation=generation)
    db.session.commit()
    assert not landed
    assert load_tokens(oauth_authenticator).access_token == "newer"


def test_callers_that_waited_share_the_failure_of_the_renewal(app, make_authenticator, short_lived_provider):
    authenticator = make_authenticator(
        "Wrong", method="oauth2", grant_type="client_credentials", access_token_url=short_lived_provider.token_endpoint,
        client_id="basic-client", client_authentication="basic_header", secrets={"client_secret": "wrong"},
    )
    short_lived_provider.reset_stats()
    results, errors = burst(app, authenticator, 8)
    assert results == [] and errors == ["invalid_client"] * 8
    assert short_lived_provider.token_requests() == 1


def test_a_rotated_refresh_token_is_never_lost(app, make_authenticator, short_lived_provider, client):
    from tests.support.oidc import headless_authorize

    from .conftest import TEST_CLIENT_CALLBACK
    from .test_login import come_back, start

    authenticator = make_authenticator(
        "PKCE", method="oauth2", grant_type="authorization_code_pkce", status="need_login",
        auth_url=short_lived_provider.authorization_endpoint, access_token_url=short_lived_provider.token_endpoint,
        client_id="public-client", client_authentication="none", scope="openid offline_access api:read",
        extra_params=[{"target": "authorization", "name": "prompt", "value": "consent"}],
    )
    come_back(client, headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK))
    for _ in range(2):
        time.sleep(TTL + 0.1)
        short_lived_provider.reset_stats()
        results, errors = burst(app, authenticator, 8)
        assert errors == [] and short_lived_provider.token_requests("refresh_token") == 1
        assert len({tokens.refresh_token for tokens in results}) == 1
