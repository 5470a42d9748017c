"""Code in the app's own process uses authenticators through apiauth.use, as `auth=` of requests and httpx."""

import threading

import pytest

import apiauth
import apiauth.inprocess
from apiauth.client import ApiauthError
from apiauth.extensions import db
from apiauth.models import Authenticator, Domain
from tests.support.consumers import LIBRARIES, bearer_token, call, revoke, token_is_active


@pytest.fixture
def credential_requests(monkeypatch):
    """Count the credentials that apiauth.use asks apiauth.consumers for."""
    calls = []

    def counted(*arguments):
        calls.append(arguments)
        return original(*arguments)

    original = apiauth.inprocess.credentials
    monkeypatch.setattr(apiauth.inprocess, "credentials", counted)
    return calls


def stored(authenticator):
    """Return the authenticator as the database has it now."""
    return db.session.get(Authenticator, authenticator.id, populate_existing=True)


@pytest.mark.parametrize("library", LIBRARIES)
def test_api_key_header_is_added(library, api_key_header, third_party):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-123")
    assert call(library, "GET", url, apiauth.use("Acme", "Reports"))[0] == 200


@pytest.mark.parametrize("library", LIBRARIES)
def test_api_key_query_parameter_replaces_one_of_the_same_name(library, api_key_query, third_party):
    url = third_party.accept(lambda request: request.args.getlist("api_key") == ["key-456"])
    status, body, _ = call(library, "GET", url + "?api_key=stale&page=2", apiauth.use("Acme", "maps"))
    assert (status, body["query"]) == (200, {"page": ["2"], "api_key": ["key-456"]})


@pytest.mark.parametrize("library", LIBRARIES)
def test_basic_credentials_are_added(library, basic, third_party):
    url = third_party.accept(lambda request: request.headers.get("Authorization", "").startswith("Basic "))
    assert call(library, "GET", url, apiauth.use("Acme", "Ledger"))[0] == 200


@pytest.mark.oidc
@pytest.mark.parametrize("library", LIBRARIES)
def test_a_rejected_token_is_reported_renewed_and_the_request_sent_once_more(
    library, oauth, oidc_provider, third_party, credential_requests
):
    url = third_party.accept(lambda request: token_is_active(oidc_provider, bearer_token(request)))
    auth = apiauth.use("Acme", "Payments", consumer="nightly-settlement")
    assert call(library, "GET", url, auth)[0] == 200
    revoke(oidc_provider, bearer_token(third_party.seen[-1]))

    status, body, earlier = call(library, "POST", url, auth, b"settle")

    assert (status, body["body"], earlier) == (200, "settle", [401])
    assert len(credential_requests) == 2
    assert bearer_token(third_party.seen[-1]) != bearer_token(third_party.seen[-2])
    assert (stored(oauth).status, stored(oauth).last_consumer) == ("succeeded", "nightly-settlement")


@pytest.mark.parametrize("library", LIBRARIES)
def test_credentials_are_fetched_once_while_they_are_fresh(library, api_key_header, third_party, credential_requests):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-123")
    auth = apiauth.use("Acme", "Reports")
    assert [call(library, "GET", url, auth)[0] for _ in range(3)] == [200, 200, 200]
    assert len(credential_requests) == 1


def test_a_rejection_of_static_credentials_is_recorded(api_key_header, third_party):
    url = third_party.accept(lambda request: False)
    status, _, earlier = call("requests", "GET", url, apiauth.use("Acme", "Reports", consumer="report-job"))
    assert (status, earlier) == (401, [])  # the same key again would be rejected again: no second try
    assert (stored(api_key_header).status, stored(api_key_header).status_reason) == ("failed", "http_401")
    assert stored(api_key_header).last_consumer == "report-job"


@pytest.mark.oidc
@pytest.mark.parametrize("library", LIBRARIES)
def test_an_authenticator_nobody_logged_in_to_raises_need_login(library, not_connected, third_party):
    url = third_party.accept(lambda request: True)
    with pytest.raises(ApiauthError) as raised:
        call(library, "GET", url, apiauth.use("Acme", "Mailbox"))
    assert (raised.value.code, raised.value.status) == ("need_login", 409)
    assert stored(not_connected).status == "need_login"


@pytest.mark.parametrize(("domain_name", "name"), [("Acme", "No such thing"), ("Other", "Reports")])
def test_an_unknown_domain_or_name_raises_not_found(domain_name, name, api_key_header, third_party):
    db.session.add(Domain(name="Other"))
    db.session.commit()
    url = third_party.accept(lambda request: True)
    with pytest.raises(ApiauthError) as raised:
        call("httpx", "GET", url, apiauth.use(domain_name, name))
    assert raised.value.code == "not_found"


def test_it_works_from_a_thread_without_an_app_context(app, api_key_header, third_party):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-123")
    auth, statuses = apiauth.use("Acme", "Reports", app=app), []
    worker = threading.Thread(target=lambda: statuses.append(call("requests", "GET", url, auth)[0]))
    worker.start()
    worker.join(10)
    assert statuses == [200]


def test_it_does_not_commit_the_callers_unfinished_work(api_key_header, third_party):
    url = third_party.accept(lambda request: True)
    db.session.add(Domain(name="Unfinished"))
    assert call("requests", "GET", url, apiauth.use("Acme", "Reports"))[0] == 200
    db.session.rollback()
    assert db.session.query(Domain).filter_by(name="Unfinished").count() == 0
