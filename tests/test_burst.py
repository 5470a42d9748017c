"""Four gunicorn workers, 200 credentials calls at the moment the token expires: one token request.
The app runs as in production: gunicorn workers on a database prepared with the real
command line (an SQLite file, or PostgreSQL when the session runs on it), the authenticator
created through the API, tokens from oidc-provider behind a proxy that answers in a quarter
of a second, as a busy authorization server does (which widens the window in which callers
find the token due). The same burst against the app without the lease counts more token
requests: the count is what the lease decides.

On PostgreSQL the same holds for two instances (separate gunicorn masters, two workers each)
on one database, the calls spread over both in turn as a load balancer would.
"""

import os
import shutil
import signal
import threading
import time

import pytest

from bench.support import (
    Gunicorn,
    Instances,
    TokenEndpointProxy,
    app_environment,
    burst_at_expiry,
    call_credentials,
    create_oauth_authenticator,
    prepare_database,
    warm_up,
)
from tests.support.postgres import wanted

pytestmark = pytest.mark.oidc
WORKERS, THREADS, BURST = 4, 16, 200
# Token lifetime: the burst must end before the renewed token is due in turn (in 0.9 × TTL),
# which a shared machine under load (calls taking seconds) must not make impossible.
TTL = 10
TOKEN_ENDPOINT_DELAY = 0.25
LEASE = 2.0


@pytest.fixture(scope="module")
def provider(oidc_provider_factory):
    """An oidc-provider whose client-credentials tokens live a few seconds."""
    return oidc_provider_factory(client_credentials_ttl=TTL, access_token_ttl=TTL)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, schema_template):
    """A database of the session's kind made by `db upgrade`, `domains create` and `tokens create`.

    Yields (environment, tokens); tests serve copies of it.
    """
    if schema_template is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('burst') / 'apiauth.sqlite3'}"
    else:
        url = schema_template.new_database("template0")
    environment = app_environment(url)
    yield environment, prepare_database(environment)
    _drop(url, schema_template)


def _copy(url, tmp_path, schema_template):
    """Copy the prepared database: the SQLite file, or a PostgreSQL database made from it as a template."""
    if schema_template is None:
        copy = tmp_path / "apiauth.sqlite3"
        shutil.copyfile(url.removeprefix("sqlite:///"), copy)
        return f"sqlite:///{copy}"
    return schema_template.new_database(url.rsplit("/", 1)[1])


def _drop(url, schema_template):
    if schema_template is not None:
        schema_template.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def tokens(prepared):
    """The prepared domain's service tokens."""
    return prepared[1]


@pytest.fixture
def serve(prepared, schema_template, tmp_path):
    """Start gunicorn on a copy of the prepared database: serve(app) returns the server; all stop after the test."""
    environment, _ = prepared
    url = _copy(environment["APIAUTH_DATABASE_URL"], tmp_path, schema_template)
    servers = []

    def start(app="wsgi:app", workers=WORKERS):
        servers.append(Gunicorn({**environment, "APIAUTH_DATABASE_URL": url}, tmp_path,
                                app=app, workers=workers, threads=THREADS))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
    _drop(url, schema_template)


@pytest.fixture
def busy_token_endpoint(provider):
    """The provider's token endpoint, answering after TOKEN_ENDPOINT_DELAY."""
    with TokenEndpointProxy(provider.token_endpoint, delay=TOKEN_ENDPOINT_DELAY) as endpoint:
        yield endpoint


def expiry_burst(server, tokens, provider, token_endpoint):
    """Get a first token, let every worker serve a call, then burst the moment the token expires."""
    authenticator_id = create_oauth_authenticator(server, tokens.manage, token_endpoint)
    provider.reset_stats()
    first = call_credentials(server, tokens.use, authenticator_id)
    assert first.status == 200, first.error
    warm_up(server, tokens.use, authenticator_id)
    assert provider.token_requests() == 1
    return first, burst_at_expiry(server, provider, tokens.use, authenticator_id, first.expires_at, BURST)


def test_two_hundred_calls_at_expiry_across_four_workers_make_one_token_request(
    serve, tokens, provider, busy_token_endpoint
):
    first, burst = expiry_burst(serve(), tokens, provider, busy_token_endpoint.url)
    assert burst.failures == []
    assert burst.authorizations != {first.authorization} and len(burst.authorizations) == 1
    assert {answer.generation for answer in burst.answers} == {first.generation + 1}
    assert burst.token_requests == 1


two_instances = pytest.mark.skipif(
    not wanted(), reason="instances share the database over the network: PostgreSQL only (APIAUTH_TEST_DATABASE=postgresql)"
)


@two_instances
def test_two_hundred_calls_at_expiry_across_two_instances_make_one_token_request(
    serve, tokens, provider, busy_token_endpoint
):
    instances = Instances([serve(workers=WORKERS // 2), serve(workers=WORKERS // 2)])
    first, burst = expiry_burst(instances, tokens, provider, busy_token_endpoint.url)
    assert burst.failures == []
    assert burst.authorizations != {first.authorization} and len(burst.authorizations) == 1
    assert burst.token_requests == 1


@two_instances
def test_with_a_lock_per_process_two_instances_make_more_token_requests(serve, tokens, provider, busy_token_endpoint):
    app = "bench.support:app_with_process_lock()"
    instances = Instances([serve(app, workers=WORKERS // 2), serve(app, workers=WORKERS // 2)])
    _, burst = expiry_burst(instances, tokens, provider, busy_token_endpoint.url)
    assert 2 <= burst.token_requests <= WORKERS


@pytest.mark.parametrize(
    "app, fewest, most",
    # A lock per process renews once in each worker the burst reaches: more than one shows
    # that the burst reaches several workers at once, which the lease alone must coordinate.
    [("bench.support:app_with_process_lock()", 2, WORKERS), ("bench.support:app_without_lease()", 2, BURST)],
    ids=["lock per process", "no lock"],
)
def test_without_the_lease_the_same_burst_makes_more_token_requests(
    serve, tokens, provider, busy_token_endpoint, app, fewest, most
):
    _, burst = expiry_burst(serve(app), tokens, provider, busy_token_endpoint.url)
    assert fewest <= burst.token_requests <= most


def test_when_the_worker_holding_the_lease_dies_another_renews_once_the_lease_expires(serve, tokens, provider):
    server = serve(f"bench.support:configured_app(TOKEN_LEASE_SECONDS={LEASE})")
    with TokenEndpointProxy(provider.token_endpoint) as endpoint:
        authenticator_id = create_oauth_authenticator(server, tokens.manage, endpoint.url)
        provider.reset_stats()
        endpoint.holding = True
        doomed = threading.Thread(target=call_credentials, args=(server, tokens.use, authenticator_id), daemon=True)
        doomed.start()
        assert endpoint.held.wait(10), "no token request came"
        held_at = time.monotonic()
        holder = server.worker_with_local_port(endpoint.held_client_port)
        assert holder is not None
        os.kill(holder, signal.SIGKILL)
        endpoint.holding = False
        answer = call_credentials(server, tokens.use, authenticator_id)
        waited = time.monotonic() - held_at
        doomed.join(10)
    assert holder not in server.worker_pids()
    assert answer.status == 200, answer.error
    assert waited >= LEASE - 0.5
    # The dead worker's request never got through: the token came from the one that took over.
    assert provider.token_requests() == 1
