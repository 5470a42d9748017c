"""The credentials endpoint answers its common call from one read, and still sees every change at once.

A call whose token is cached and valid, and whose use was recorded recently, is answered from
a single SELECT (apiauth.consumers.cached_credentials). Each test first makes such a call (the
`warm` fixture checks that the fast path answered it), then changes something and checks that
the next call shows it: revocation, limits, another domain, a report, a new secret, another
consumer, time passing.
"""

import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from apiauth.api import gate, views
from apiauth.extensions import db
from apiauth.models import Authenticator, Domain, ServiceToken, utcnow
from apiauth.service_tokens import create_service_token, revoke_service_token
from tests.support.consumers import token_is_active
from tests.test_api import SECRET, Api, assert_error, fresh


@pytest.fixture
def make_api(app, domain):
    def make(scope="use", authenticators=(), name="billing"):
        _, token = create_service_token(domain, name, scope, authenticators)
        return Api(app.test_client(), token)

    return make


@pytest.fixture
def user(make_api):
    return make_api()


@pytest.fixture
def weather(make_authenticator):
    return make_authenticator("Weather", secrets={"value": SECRET})


@pytest.fixture
def statements(app):
    """The SQL statements run through SQLAlchemy's Connection from now on (the fast path's one read is not)."""
    seen = []

    def record(connection, cursor, statement, *args):
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def warm(statements, monkeypatch):
    """Call twice: the first call records the use; the fast path must answer the second, with nothing else run."""

    def full_path(authenticator_id):
        raise AssertionError("the full path answered")

    def call_twice(api, authenticator, **body):
        first = credentials(api, authenticator, **body)
        assert first.status_code == 200, first.get_data(as_text=True)
        statements.clear()
        with monkeypatch.context() as patch:
            patch.setattr(views, "get_authenticator", full_path)
            second = credentials(api, authenticator, **body)
        assert second.status_code == 200, second.get_data(as_text=True)
        assert statements == []
        return first.get_json(), second.get_json()

    return call_twice


def credentials(api, authenticator, **body):
    return api("POST", f"/authenticators/{authenticator.id}/credentials", json=body)


def test_a_repeated_call_is_answered_from_one_read_with_the_same_answer(user, weather, warm):
    first, second = warm(user, weather)
    assert first == second == {"headers": {"X-API-Key": SECRET}, "query": {}, "expires_at": None, "generation": None}


@pytest.mark.parametrize("method", ["api_key_query", "basic"])
def test_the_fast_path_answers_as_the_full_path_for_every_static_method(request, user, warm, method):
    first, second = warm(user, request.getfixturevalue(method))
    assert first == second and (first["headers"] or first["query"])


@pytest.mark.oidc
def test_a_cached_oauth_token_is_answered_from_one_read(user, oauth, oidc_provider, warm):
    first, second = warm(user, oauth, min_validity=10)
    assert second == first
    assert first["headers"]["Authorization"].startswith("Bearer ") and first["generation"] == 1
    assert token_is_active(oidc_provider, first["headers"]["Authorization"].removeprefix("Bearer "))


def test_a_revoked_token_is_refused_at_the_next_call(user, weather, warm):
    warm(user, weather)
    revoke_service_token(db.session.scalar(db.select(ServiceToken)))
    assert_error(credentials(user, weather), 401, "unauthorized")


def used_just_now(authenticator, consumer):
    """Record a use of an authenticator by a consumer now, as a call a moment ago would have."""
    db.session.execute(
        update(Authenticator).where(Authenticator.id == authenticator.id).values(last_consumer=consumer, last_used_at=utcnow())
    )
    db.session.commit()


def test_a_limited_token_reaches_its_authenticators_only(make_api, make_authenticator, weather, warm):
    maps = make_authenticator("Maps", secrets={"value": "maps-key"})
    limited = make_api(authenticators=[maps])
    assert warm(limited, maps)[1]["headers"] == {"X-API-Key": "maps-key"}
    # Nothing would be written: only the limit may refuse.
    used_just_now(weather, "billing")
    assert_error(credentials(limited, weather), 403, "forbidden")


def test_another_domains_authenticator_is_not_found(user, weather, make_authenticator, warm):
    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()
    foreign = make_authenticator("Foreign", secrets={"value": "foreign-key"}, target_domain=other)
    warm(user, weather)
    used_just_now(foreign, "billing")
    assert_error(credentials(user, foreign), 404, "not_found")


@pytest.mark.oidc
def test_a_reported_rejection_drops_the_token_and_the_next_call_gets_a_fresh_one(user, oauth, oidc_provider, warm):
    issued = warm(user, oauth)[1]
    report = user("POST", f"/authenticators/{oauth.id}/report", json={"status_code": 401, "generation": issued["generation"]})
    assert report.get_json() == {"dropped": True, "status": "failed", "reason": "http_401"}
    renewed = credentials(user, oauth).get_json()
    assert renewed["generation"] == issued["generation"] + 1
    assert renewed["headers"] != issued["headers"]
    assert token_is_active(oidc_provider, renewed["headers"]["Authorization"].removeprefix("Bearer "))
    assert (fresh(oauth).status, fresh(oauth).status_reason) == ("succeeded", "")


@pytest.mark.oidc
def test_a_success_after_a_reported_failure_shows_at_once(user, oauth, warm):
    issued = warm(user, oauth)[1]
    # A rejection of an older token: the cached one stays, the status says failed.
    stale = user("POST", f"/authenticators/{oauth.id}/report", json={"status_code": 401, "generation": 0})
    assert stale.get_json() == {"dropped": False, "status": "failed", "reason": "http_401"}
    assert credentials(user, oauth).get_json() == issued
    assert (fresh(oauth).status, fresh(oauth).status_reason) == ("succeeded", "")


@pytest.mark.oidc
def test_a_token_too_short_for_min_validity_is_renewed(user, oauth, warm):
    issued = warm(user, oauth)[1]
    # oidc-provider's tokens live 60 s here: asking for more renews the token.
    renewed = credentials(user, oauth, min_validity=300).get_json()
    assert renewed["generation"] == issued["generation"] + 1
    assert renewed["headers"] != issued["headers"]


def test_a_new_secret_is_handed_out_at_the_next_call(user, make_api, weather, warm):
    warm(user, weather)
    manager = make_api("manage", name="provisioning")
    assert manager("PATCH", f"/authenticators/{weather.id}", json={"version": 1, "value": "rotated-key"}).status_code == 200
    assert credentials(user, weather).get_json()["headers"] == {"X-API-Key": "rotated-key"}


def test_another_consumer_is_recorded_at_once(user, make_api, make_authenticator, weather, warm):
    warm(user, weather)
    shipping = make_api(name="shipping")
    warm(shipping, make_authenticator("Maps", secrets={"value": "maps-key"}))
    assert credentials(shipping, weather).status_code == 200
    assert fresh(weather).last_consumer == "shipping"


@pytest.mark.parametrize("model", [Authenticator, ServiceToken])
def test_uses_are_recorded_again_once_the_last_record_is_old(user, weather, warm, model):
    warm(user, weather)
    old = utcnow() - timedelta(minutes=1)
    db.session.execute(update(model).values(last_used_at=old))
    db.session.commit()
    assert credentials(user, weather).status_code == 200
    db.session.expire_all()
    assert db.session.scalar(db.select(model)).last_used_at > old


def test_a_bad_body_is_refused_after_the_token_is_checked(app, user, weather, warm):
    warm(user, weather)
    bad = credentials(user, weather, min_validity="soon")
    assert bad.get_json()["fields"] == {"min_validity": ["Send the seconds the credentials must stay valid, from 0 to 86400."]}
    assert_error(credentials(Api(app.test_client(), "apiauth_unknown"), weather, min_validity="soon"), 401, "unauthorized")


@pytest.mark.oidc
def test_an_authenticator_nobody_logged_in_to_answers_need_login_every_time(user, not_connected):
    for _ in range(2):
        assert_error(credentials(user, not_connected), 409, "need_login")
    assert fresh(not_connected).status == "need_login"


def test_on_sqlite_a_repeated_call_reuses_the_read_until_anything_writes(app, database_url, user, weather, warm,
                                                                          monkeypatch):
    """SQLite: the one read is kept while PRAGMA data_version says no connection wrote since.

    A write from a connection of its own (as another worker or the command line would make)
    shows at the next call.
    """
    if not database_url.startswith("sqlite"):
        pytest.skip("the read is kept on SQLite only (its file tells when anything wrote)")
    warm(user, weather)
    reads = []
    real_first = gate._CompiledRead.first
    monkeypatch.setattr(gate._CompiledRead, "first", lambda self, values: reads.append(1) or real_first(self, values))
    assert credentials(user, weather).status_code == 200
    assert reads == []
    with closing(sqlite3.connect(db.engine.url.database)) as elsewhere, elsewhere:
        elsewhere.execute("UPDATE service_tokens SET revoked_at = CURRENT_TIMESTAMP")
    assert_error(credentials(user, weather), 401, "unauthorized")
    assert reads == [1]
