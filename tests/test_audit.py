"""The audit page: what happened in a domain, newest first, filtered, and never a secret."""

import base64
import html
import json
import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from werkzeug import Response

from apiauth import create_app
from apiauth.audit.events import record_event
from apiauth.crypto import KeyRing
from apiauth.engine.config import TokenSet
from apiauth.extensions import db
from apiauth.models import AuditEvent, Domain, Membership, ServiceToken, SignInFailure
from apiauth.tokenstore import store_tokens
from tests.support.oidc import headless_authorize

from .conftest import TEST_CLIENT_CALLBACK, TEST_KEY, sign_in
from .test_login import come_back, login_authenticator, start  # noqa: F401 (login_authenticator: a fixture)
from .test_secrets import assert_no_canary
from .test_service_tokens import created_token

ROW = re.compile(r'<tr id="audit-event-\d+">(.*?)</tr>', re.DOTALL)
CELL = re.compile(r"<td>(.*?)</td>", re.DOTALL)
CLIENT_SECRET = "canary-clientsecret-c2d4"
REFRESH_TOKEN = "canary-refreshtoken-8e1b"


def rows(page):
    """The audit table as (user, action, authenticator, detail, address) tuples, top to bottom."""
    return [tuple(html.unescape(cell.strip()) for cell in CELL.findall(row)[1:]) for row in ROW.findall(page)]


def audit(client, query="", **headers):
    response = client.get(f"/audit{query}", headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def stored_events():
    """Every column of every stored audit event and throttled failure, as text."""
    db.session.expire_all()
    events = db.session.scalars(db.select(AuditEvent)).all()
    failures = db.session.scalars(db.select(SignInFailure)).all()
    return repr([vars(row) for row in (*events, *failures)])


def test_the_navigation_links_the_audit_log(client):
    assert '<a href="/audit">Audit log</a>' in client.get("/authenticators").get_data(as_text=True)


def test_changes_sign_ins_and_service_tokens_show_newest_first(app, anonymous, admin):
    anonymous.post("/login", data={"username": "alice", "password": "wrong"})
    client = sign_in(app.test_client(), "alice")
    client.post("/authenticators", data={"method": "api_key", "name": "Weather", "key": "X-Key", "value": "v-1"})
    created_token(client.post("/service-tokens", data={"name": "billing", "scope": "use"}).get_data(as_text=True))
    token_id = db.session.scalar(db.select(ServiceToken.id))
    client.post(f"/service-tokens/{token_id}/revoke", data={})
    client.post("/logout", data={})
    client = sign_in(client, "alice")
    assert rows(audit(client)) == [
        ("alice", "signed in", "—", "", "127.0.0.1"),
        ("alice", "signed out", "—", "", "127.0.0.1"),
        ("alice", "service token revoked", "—", "billing", "127.0.0.1"),
        ("alice", "service token created", "—", "billing (use)", "127.0.0.1"),
        ("alice", "created", "Weather", "fields: description, key, add_to, conditions, allowed_hosts, value", "127.0.0.1"),
        ("alice", "signed in", "—", "", "127.0.0.1"),
        ("alice", "sign-in failed", "—", "wrong password", "127.0.0.1"),
    ]


def test_a_sign_in_with_an_unknown_user_name_keeps_only_the_address(client, anonymous):
    typed = "my-password-typed-in-the-wrong-field"
    anonymous.post("/login", data={"username": typed, "password": "x"}, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    page = audit(client)
    assert ("—", "sign-in failed", "—", "unknown user name", "192.0.2.9") in rows(page)
    assert typed not in page and typed not in stored_events()


def test_a_service_tokens_use_is_recorded_once_per_stamp(app, client):
    token = created_token(client.post("/service-tokens", data={"name": "billing", "scope": "use"}).get_data(as_text=True))
    for _ in range(3):
        app.test_client().get("/api/v1/authenticators", headers={"Authorization": f"Bearer {token}"})
    uses = [row for row in rows(audit(client)) if row[1] == "service token used"]
    assert uses == [("billing (service token)", "service token used", "—", "", "127.0.0.1")]


def test_a_key_rotation_shows_on_the_page_with_its_counts(tmp_path, database_url, client, make_authenticator):
    make_authenticator("Weather", secrets={"value": "v-1"})
    new_key = base64.urlsafe_b64encode(b"n" * 32).decode()
    rotating = create_app({"INSTANCE_PATH": str(tmp_path / "rotating"), "SECRET_KEY": "x",
                           "SQLALCHEMY_DATABASE_URI": database_url, "ENCRYPTION_KEYS": [new_key, TEST_KEY]})
    with rotating.app_context():
        assert rotating.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
        db.engine.dispose()
    new_id = KeyRing([new_key]).primary_id
    assert ("command line", "keys rotated", "—", f"values re-encrypted under key {new_id}: 1; left under old keys: 0",
            "—") in rows(audit(client))


def test_filters_narrow_the_list_and_htmx_gets_the_table_alone(client, make_authenticator, admin, domain):
    weather, crm = make_authenticator("Weather"), make_authenticator("CRM")
    for authenticator, actor, action in [(weather, "alice", "updated"), (crm, "bob", "updated"),
                                         (weather, "bob", "deleted")]:
        record_event(action, actor, authenticator=authenticator)
    db.session.commit()
    assert [r[:3] for r in rows(audit(client, "?authenticator=Weather"))] == [("bob", "deleted", "Weather"),
                                                                              ("alice", "updated", "Weather")]
    assert [r[:3] for r in rows(audit(client, "?actor=bob"))] == [("bob", "deleted", "Weather"), ("bob", "updated", "CRM")]
    assert [r[:3] for r in rows(audit(client, "?action=updated&actor=bob"))] == [("bob", "updated", "CRM")]
    page = audit(client, "?action=deleted")
    assert '<option value="deleted" selected>deleted</option>' in page
    assert '<option value="Weather" >Weather</option>' in page and '<option value="bob" >bob</option>' in page
    response = client.get("/audit?actor=bob", headers={"HX-Request": "true"})
    partial = response.get_data(as_text=True)
    assert "<html" not in partial and len(rows(partial)) == 2
    assert "HX-Request" in response.headers["Vary"]
    assert "No event matches these filters." in audit(client, "?actor=nobody")


def test_the_list_pages_fifty_events_at_a_time(client, make_authenticator):
    weather = make_authenticator("Weather")
    for number in range(60):
        record_event("updated", f"user-{number:02d}", authenticator=weather)
    db.session.commit()
    first = audit(client, "?authenticator=Weather")
    assert len(rows(first)) == 50 and rows(first)[0][0] == "user-59"
    assert 'href="/audit?authenticator=Weather&amp;page=2"' in first and "Newer" not in first
    second = audit(client, "?authenticator=Weather&page=2")
    assert [row[0] for row in rows(second)] == [f"user-{number:02d}" for number in range(9, -1, -1)]
    assert 'href="/audit?authenticator=Weather"' in second and "Older" not in second


def test_a_domain_sees_its_own_events_and_those_of_no_domain(app, client, make_user):
    beta = Domain(name="Beta")
    db.session.add(beta)
    db.session.commit()
    record_event("signed in", "beta-user", domain_id=beta.id)
    record_event("keys rotated", "command line", detail="values re-encrypted under key x: 0; left under old keys: 0")
    db.session.commit()
    make_user("bea", {beta: True})
    beta_page = audit(sign_in(app.test_client(), "bea"))
    acme_page = audit(client)
    assert "beta-user" in beta_page and "beta-user" not in acme_page
    assert "keys rotated" in beta_page and "keys rotated" in acme_page


def test_a_sign_in_failure_shows_in_every_domain_of_the_user(app, client, anonymous, admin):
    beta = Domain(name="Beta")
    db.session.add(beta)
    db.session.flush()
    db.session.add(Membership(user_id=admin.id, domain_id=beta.id, domain_manager=True))
    db.session.commit()
    anonymous.post("/login", data={"username": "alice", "password": "wrong"})
    assert db.session.scalars(
        db.select(AuditEvent.domain_id).where(AuditEvent.action == "sign-in failed").order_by(AuditEvent.domain_id)
    ).all() == sorted([admin.memberships[0].domain_id, beta.id])


@pytest.mark.oidc
def test_logins_are_recorded_started_succeeded_and_failed_with_their_reason(client, login_authenticator, oidc_provider):  # noqa: F811
    authenticator = login_authenticator(client=("basic-client", "basic-secret", "basic_header"))
    come_back(client, headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK))
    state = parse_qs(urlsplit(start(client, authenticator)).query)["state"][0]
    client.get("/oauth/callback?" + urlencode({"error": "access_denied", "state": state, "iss": oidc_provider.issuer}))
    assert [row[:4] for row in rows(audit(client, "?authenticator=CRM"))] == [
        ("alice", "login failed", "CRM", "access_denied"),
        ("alice", "login started", "CRM", ""),
        ("alice", "logged in", "CRM", ""),
        ("alice", "login started", "CRM", ""),
    ]


@pytest.mark.oidc
def test_a_login_error_that_echoes_the_client_secret_is_masked(client, login_authenticator, oidc_provider):  # noqa: F811
    authenticator = login_authenticator(client=("basic-client", CLIENT_SECRET, "basic_header"))
    state = parse_qs(urlsplit(start(client, authenticator)).query)["state"][0]
    client.get("/oauth/callback?" + urlencode({"error": CLIENT_SECRET, "state": state, "iss": oidc_provider.issuer}))
    page = audit(client)
    assert ("alice", "login failed", "CRM", "[redacted]", "127.0.0.1") in rows(page)
    assert_no_canary(page, "the audit page")
    assert_no_canary(client.get("/authenticators").get_data(as_text=True), "the pane")
    assert_no_canary(stored_events(), "the audit table")


@pytest.fixture
def echoing_token_endpoint(httpserver):
    """A token endpoint that refuses every request with an error code echoing the refresh token it got."""

    def answer(request):
        error = request.form.get("refresh_token", "invalid_request")
        return Response(json.dumps({"error": error}), status=400, content_type="application/json")

    httpserver.expect_request("/token").respond_with_handler(answer)
    return httpserver.url_for("/token")


def test_a_failed_token_renewal_is_recorded_with_the_tokens_masked(client, make_authenticator, echoing_token_endpoint):
    authenticator = make_authenticator(
        "CRM", method="oauth2", grant_type="authorization_code", status="connected",
        access_token_url=echoing_token_endpoint, auth_url="http://127.0.0.1:1/authorize", client_id="crm",
        client_authentication="body", secrets={"client_secret": CLIENT_SECRET},
    )
    expired = time.time() - 10
    store_tokens(authenticator, TokenSet("access", refresh_token=REFRESH_TOKEN, expires_at=expired,
                                         obtained_at=expired - 3600))
    db.session.commit()
    client.post(f"/authenticators/{authenticator.id}/test", data={"http_method": "GET"})
    page = audit(client, "?action=token+renewal+failed")
    assert rows(page) == [("apiauth", "token renewal failed", "CRM", "[redacted]", "127.0.0.1")]
    assert REFRESH_TOKEN not in page and REFRESH_TOKEN not in stored_events()
