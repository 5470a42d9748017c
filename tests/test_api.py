"""The JSON API, as a service holding a service token sees it."""

import json
import re
from datetime import timedelta

import pytest
from werkzeug import Response

from apiauth.extensions import db
from apiauth.models import AuditEvent, Authenticator, Domain, ServiceToken
from apiauth.service_tokens import create_service_token, revoke_service_token

SECRET = "canary-key-9d1e"
OAUTH_FIELDS = {
    "method": "oauth2",
    "name": "CRM",
    "grant_type": "client_credentials",
    "access_token_url": "https://auth.example.com/oauth/token",
    "client_id": "crm-client",
    "client_secret": "crm-secret-77",
    "client_authentication": "basic_header",
    "scope": "read write",
}


class Api:
    """A service calling the API with a bearer token."""

    def __init__(self, client, token):
        self.client, self.token = client, token

    def __call__(self, method, path, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)


@pytest.fixture
def make_api(app, domain):
    """Make a caller with a new token: make_api('use', authenticators=[...])."""

    def make(scope="use", authenticators=(), name=None, target_domain=None):
        _, token = create_service_token(target_domain or domain, name or f"{scope}-service", scope, authenticators)
        return Api(app.test_client(), token)

    return make


@pytest.fixture
def manager(make_api):
    return make_api("manage", name="provisioning")


@pytest.fixture
def user(make_api):
    return make_api("use", name="billing")


@pytest.fixture
def weather(make_authenticator):
    return make_authenticator("Weather", secrets={"value": SECRET})


def fresh(authenticator):
    db.session.expire_all()
    return db.session.get(Authenticator, authenticator.id)


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert response.get_json()["error"] == code
    assert response.get_json()["message"]


# Seeing authenticators


def test_the_list_shows_configuration_and_status_but_no_secret(user, weather):
    response = user("GET", "/authenticators")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    [shown] = response.get_json()["authenticators"]
    assert shown == {
        "id": weather.id, "name": "Weather", "description": "", "method": "api_key", "key": "X-API-Key",
        "add_to": "header", "conditions": [], "allowed_hosts": [], "secrets_set": ["value"],
        "status": "not_tested", "status_reason": "", "status_updated_at": None,
        "last_consumer": "", "last_used_at": None, "version": 1,
        "created_at": shown["created_at"], "modified_at": shown["modified_at"], "modified_by": "alice",
    }
    assert shown["modified_at"].endswith("Z")
    assert SECRET not in response.get_data(as_text=True)
    assert response.get_json()["next"] is None


def test_one_authenticator_shows_which_secrets_are_set(user, make_authenticator):
    crm = make_authenticator("CRM", method="oauth2", client_id="crm", secrets={"client_secret": "s3cret-value"})
    shown = user("GET", f"/authenticators/{crm.id}").get_json()
    assert shown["secrets_set"] == ["client_secret"]
    assert shown["client_id"] == "crm" and shown["grant_type"] == "client_credentials"
    assert "s3cret-value" not in json.dumps(shown)


def test_the_list_comes_in_pages_and_finds_by_name(user, make_authenticator):
    for number in range(3):
        make_authenticator(f"Service {number}", secrets={"value": "v"})
    first = user("GET", "/authenticators?limit=2").get_json()
    assert [a["name"] for a in first["authenticators"]] == ["Service 0", "Service 1"]
    rest = user("GET", first["next"].removeprefix("/api/v1")).get_json()
    assert [a["name"] for a in rest["authenticators"]] == ["Service 2"] and rest["next"] is None
    found = user("GET", "/authenticators?name=service%201").get_json()["authenticators"]
    assert [a["name"] for a in found] == ["Service 1"]
    assert user("GET", "/authenticators?limit=0").get_json()["fields"] == {"limit": ["Send a page size from 1 to 500."]}


def test_another_domains_authenticator_is_not_found(user, make_authenticator):
    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()
    foreign = make_authenticator("Foreign", secrets={"value": "v"}, target_domain=other)
    assert user("GET", "/authenticators").get_json()["authenticators"] == []
    for method, path in [("GET", ""), ("POST", "/credentials"), ("POST", "/report"), ("POST", "/relay")]:
        assert_error(user(method, f"/authenticators/{foreign.id}{path}", json={"status_code": 200}), 404, "not_found")
    assert_error(user("GET", "/authenticators/99999999999999999999999"), 404, "not_found")


# Tokens and scopes


@pytest.mark.parametrize("header", [None, "Bearer apiauth_not-a-token", "Basic YWxpY2U6cHc=", "Bearer "])
def test_a_missing_or_unknown_token_is_unauthorized(app, weather, header):
    response = app.test_client().get("/api/v1/authenticators", headers={"Authorization": header} if header else {})
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="apiauth"'


def test_a_revoked_token_is_unauthorized(user, weather):
    assert user("GET", "/authenticators").status_code == 200
    revoke_service_token(db.session.scalar(db.select(ServiceToken)))
    assert_error(user("GET", "/authenticators"), 401, "unauthorized")


def test_a_use_token_may_not_manage(user, weather):
    calls = [("POST", "/authenticators", {"method": "basic", "name": "X", "username": "u", "password": "p"}),
             ("PATCH", f"/authenticators/{weather.id}", {"version": 1, "name": "Renamed"}),
             ("DELETE", f"/authenticators/{weather.id}", None),
             ("POST", f"/authenticators/{weather.id}/test", {"url": "https://example.com/"})]
    for method, path, body in calls:
        response = user(method, path, json=body)
        assert_error(response, 403, "forbidden")
        assert response.get_json()["message"] == "This needs a service token with scope manage."
    assert fresh(weather).name == "Weather"


def test_a_token_limited_to_some_authenticators_reaches_only_those(make_api, make_authenticator, weather):
    maps = make_authenticator("Maps", secrets={"value": "m"})
    limited = make_api("manage", authenticators=[maps])
    assert [a["name"] for a in limited("GET", "/authenticators").get_json()["authenticators"]] == ["Maps"]
    assert limited("GET", f"/authenticators/{maps.id}").status_code == 200
    assert_error(limited("GET", f"/authenticators/{weather.id}"), 403, "forbidden")
    assert_error(limited("POST", f"/authenticators/{weather.id}/credentials"), 403, "forbidden")
    created = limited("POST", "/authenticators", json={"method": "basic", "name": "New", "username": "u", "password": "p"})
    assert_error(created, 403, "forbidden")


def test_a_token_whose_only_authenticator_is_deleted_is_revoked_not_widened(make_api, make_authenticator, manager, weather):
    maps = make_authenticator("Maps", secrets={"value": "m"})
    limited = make_api("use", authenticators=[maps])
    assert manager("DELETE", f"/authenticators/{maps.id}").status_code == 204
    assert_error(limited("GET", "/authenticators"), 401, "unauthorized")


def test_a_use_records_the_tokens_last_use_at_most_every_few_seconds(user, weather):
    token = db.session.scalar(db.select(ServiceToken))
    assert token.last_used_at is None
    user("GET", "/authenticators")
    db.session.expire_all()
    first = token.last_used_at
    assert first is not None
    user("GET", "/authenticators")
    db.session.expire_all()
    assert token.last_used_at == first
    token.last_used_at = first - timedelta(minutes=1)
    db.session.commit()
    user("GET", "/authenticators")
    db.session.expire_all()
    assert token.last_used_at > first - timedelta(minutes=1)
    # The audit log names the token's use once per stamp, not once per call.
    uses = db.session.scalars(db.select(AuditEvent.actor).where(AuditEvent.action == "service token used")).all()
    assert uses == [f"{token.name} (service token)"] * 2


# Managing authenticators


@pytest.mark.parametrize(
    "body, secret_field, secret",
    [
        ({"method": "api_key", "name": "Weather", "key": "X-API-Key", "value": "k-123", "add_to": "query"}, "value", "k-123"),
        ({"method": "basic", "name": "Legacy ERP", "username": "erp-user", "password": "erp-pass"}, "password", "erp-pass"),
        (OAUTH_FIELDS, "client_secret", "crm-secret-77"),
    ],
    ids=["api_key", "basic", "oauth2"],
)
def test_each_method_is_created_with_the_forms_fields(manager, body, secret_field, secret):
    response = manager("POST", "/authenticators", json=body)
    assert response.status_code == 201, response.get_json()
    shown = response.get_json()
    assert response.headers["Location"] == f"/api/v1/authenticators/{shown['id']}"
    assert shown["name"] == body["name"] and shown["method"] == body["method"]
    assert shown["secrets_set"] == [secret_field]
    assert shown["status"] == "not_tested" and shown["modified_by"] == "provisioning (service token)"
    assert secret not in response.get_data(as_text=True)
    authenticator = db.session.get(Authenticator, shown["id"])
    assert authenticator.get_secret(secret_field) == secret
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.authenticator_id == shown["id"]))
    assert (event.actor, event.action) == ("provisioning (service token)", "created")
    assert secret_field in event.changes


def test_validation_errors_are_the_forms_messages_per_field(manager):
    response = manager("POST", "/authenticators", json={**OAUTH_FIELDS, "client_id": ""})
    assert response.status_code == 422
    assert response.get_json() == {
        "error": "validation_failed",
        "message": "Some fields need attention. Nothing was saved.",
        "fields": {"client_id": ["Enter the client ID."]},
    }


def test_validation_names_rows_unknown_fields_and_wrong_types(manager, weather):
    body = {"method": "api_key", "name": "weather", "key": "K", "value": 5, "secret": "x",
            "conditions": [{"source": "body", "operator": "matches", "value": "("}], "allowed_hosts": ["https://x.org/"]}
    fields = manager("POST", "/authenticators", json=body).get_json()["fields"]
    assert fields == {"value": ["Send text: a string of valid Unicode without NUL characters."], "secret": ["Not a field of method api_key."]}
    del body["value"], body["secret"]
    fields = manager("POST", "/authenticators", json={**body, "value": "v"}).get_json()["fields"]
    assert fields["name"] == ["Another authenticator in this domain already has this name."]
    assert fields["conditions[0].value"][0].startswith("This regular expression does not compile")
    assert fields["allowed_hosts"] == [
        "“https://x.org/” is not a host name: enter one host per line, such as api.example.com, without scheme, port or path."
    ]
    assert manager("POST", "/authenticators", json={"name": "X"}).get_json()["fields"] == {
        "method": ["Choose one of: api_key, basic, oauth2."]
    }


def test_a_name_of_blanks_is_no_name(manager):
    response = manager("POST", "/authenticators", json={"method": "basic", "name": " \f ", "username": "u", "password": "p"})
    assert response.get_json()["fields"] == {"name": ["Give the authenticator a name."]}


@pytest.mark.parametrize("name", ["nul\u0000", "lone \ud800 surrogate"], ids=["NUL", "lone surrogate"])
def test_text_a_database_cannot_hold_is_refused(manager, name):
    body = json.dumps({"method": "basic", "name": name, "username": "u", "password": "p"})
    response = manager("POST", "/authenticators", data=body, content_type="application/json")
    assert response.get_json()["fields"] == {"name": ["Send text: a string of valid Unicode without NUL characters."]}


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", ""])
def test_a_body_that_is_not_a_json_object_is_a_bad_request(manager, body):
    response = manager("POST", "/authenticators", data=body, content_type="application/json")
    assert_error(response, 400, "bad_request")


def test_a_change_sends_only_its_fields_and_the_version_it_read(manager, weather):
    response = manager("PATCH", f"/authenticators/{weather.id}",
                       json={"version": 1, "description": "Forecasts", "allowed_hosts": ["API.Weather.example"]})
    assert response.status_code == 200, response.get_json()
    shown = response.get_json()
    assert (shown["description"], shown["allowed_hosts"], shown["version"]) == ("Forecasts", ["api.weather.example"], 2)
    assert shown["key"] == "X-API-Key" and shown["secrets_set"] == ["value"]
    assert fresh(weather).get_secret("value") == SECRET
    event = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (event.actor, event.action, event.changes) == ("provisioning (service token)", "updated", ["description", "allowed_hosts"])


def test_a_change_on_a_stale_version_is_a_conflict(manager, weather):
    assert manager("PATCH", f"/authenticators/{weather.id}", json={"version": 1, "name": "Renamed"}).status_code == 200
    response = manager("PATCH", f"/authenticators/{weather.id}", json={"version": 1, "name": "Again"})
    assert_error(response, 409, "conflict")
    assert response.get_json()["version"] == 2
    assert fresh(weather).name == "Renamed"
    missing = manager("PATCH", f"/authenticators/{weather.id}", json={"name": "Again"})
    assert missing.get_json()["fields"] == {"version": ["Send the version you read, a whole number."]}


def test_a_new_secret_makes_the_status_not_tested_again(manager, make_authenticator):
    weather = make_authenticator("Weather", secrets={"value": SECRET}, status="succeeded")
    shown = manager("PATCH", f"/authenticators/{weather.id}", json={"version": 1, "value": "new-key"}).get_json()
    assert shown["status"] == "not_tested"
    assert fresh(weather).get_secret("value") == "new-key"


def test_a_delete_removes_the_authenticator_and_keeps_its_history(manager, weather):
    response = manager("DELETE", f"/authenticators/{weather.id}")
    assert response.status_code == 204 and response.data == b""
    assert_error(manager("GET", f"/authenticators/{weather.id}"), 404, "not_found")
    event = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (event.authenticator_name, event.actor, event.action) == ("Weather", "provisioning (service token)", "deleted")


@pytest.fixture
def third_party(httpserver):
    """A local API that accepts only X-API-Key: canary-key-9d1e, and says what it received."""

    def answer(request):
        if request.headers.get("X-API-Key") != SECRET:
            return Response('{"error": "denied"}', status=401, content_type="application/json")
        body = {"method": request.method, "body": request.get_data(as_text=True), "trace": request.headers.get("X-Trace")}
        return Response(json.dumps(body), content_type="application/json", headers={"X-Echo": SECRET})

    httpserver.expect_request("/v1/me").respond_with_handler(answer)
    return httpserver


def test_a_test_reports_what_happened_and_records_the_status(manager, weather, third_party):
    response = manager("POST", f"/authenticators/{weather.id}/test",
                       json={"method": "GET", "url": third_party.url_for("/v1/me"), "headers": [["Accept", "application/json"]]})
    assert response.status_code == 200
    result = response.get_json()
    assert (result["succeeded"], result["reason"], result["status_code"]) == (True, None, 200)
    assert (result["status"], result["status_reason"]) == ("succeeded", "")
    assert "judgment: succeeded" in result["log"]
    assert SECRET not in response.get_data(as_text=True)
    assert fresh(weather).status == "succeeded"


def test_a_test_request_is_validated_as_the_test_form_does(manager, weather):
    response = manager("POST", f"/authenticators/{weather.id}/test", json={"method": "BREW", "headers": [["X: y", "z"]]})
    assert response.status_code == 422
    assert response.get_json()["fields"] == {
        "headers": ["Send [[name, value], ...] or {name: value}, each a single line, names without colons."]
    }
    fields = manager("POST", f"/authenticators/{weather.id}/test", json={"method": "BREW"}).get_json()["fields"]
    assert fields == {"method": ["Not a valid choice."], "url": ["Enter the URL of an API call to try the credentials on."]}


# Using authenticators


def test_credentials_are_what_to_add_and_record_the_consumer(client, user, weather):
    response = user("POST", f"/authenticators/{weather.id}/credentials")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {"headers": {"X-API-Key": SECRET}, "query": {}, "expires_at": None, "generation": None}
    shown = user("GET", f"/authenticators/{weather.id}").get_json()
    assert shown["last_consumer"] == "billing"
    assert shown["last_used_at"].endswith("Z")
    page = client.get(f"/authenticators/{weather.id}/edit").get_data(as_text=True)
    assert re.search(r'<span id="last-use">last used \d{4}-\d\d-\d\d \d\d:\d\d UTC by “billing”</span>', page)


def test_credentials_of_an_authorization_code_grant_nobody_logged_in_to_need_login(user, make_authenticator):
    mailbox = make_authenticator("Mailbox", method="oauth2", grant_type="authorization_code", client_id="c",
                                 auth_url="https://auth.example.com/a", access_token_url="https://auth.example.com/t",
                                 secrets={"client_secret": "mailbox-secret"})
    assert_error(user("POST", f"/authenticators/{mailbox.id}/credentials", json={"min_validity": 60}), 409, "need_login")


def test_a_token_request_that_fails_is_a_502_with_its_reason(user, make_authenticator, httpserver):
    httpserver.expect_request("/token", method="POST").respond_with_json({"error": "invalid_client"}, status=401)
    crm = make_authenticator("CRM", method="oauth2", client_id="crm", access_token_url=httpserver.url_for("/token"),
                             secrets={"client_secret": "crm-secret-77"})
    response = user("POST", f"/authenticators/{crm.id}/credentials", json={})
    assert_error(response, 502, "token_error")
    assert response.get_json()["reason"] == "invalid_client"
    assert "crm-secret-77" not in response.get_data(as_text=True)
    assert (fresh(crm).status, fresh(crm).status_reason) == ("failed", "invalid_client")


def test_min_validity_must_be_seconds(user, weather):
    response = user("POST", f"/authenticators/{weather.id}/credentials", json={"min_validity": "soon"})
    assert response.get_json()["fields"] == {"min_validity": ["Send the seconds the credentials must stay valid, from 0 to 86400."]}


def test_a_reported_rejection_fails_the_status_with_its_reason(user, weather):
    response = user("POST", f"/authenticators/{weather.id}/report", json={"status_code": 401, "generation": None})
    assert response.status_code == 200
    assert response.get_json() == {"dropped": False, "status": "failed", "reason": "http_401"}
    shown = user("GET", f"/authenticators/{weather.id}").get_json()
    assert (shown["status"], shown["status_reason"], shown["last_consumer"]) == ("failed", "http_401", "billing")
    bad = user("POST", f"/authenticators/{weather.id}/report", json={"status_code": True, "extra": 1})
    assert bad.get_json()["fields"] == {
        "status_code": ["Send the HTTP status code the API answered, from 100 to 599."],
        "extra": ["Not a field of this request."],
    }


def test_a_relayed_call_reaches_an_allowed_host_with_the_credentials(user, make_authenticator, third_party):
    weather = make_authenticator("Weather", secrets={"value": SECRET}, allowed_hosts=["127.0.0.1", "localhost"])
    url = third_party.url_for("/v1/me")
    response = user("POST", f"/authenticators/{weather.id}/relay",
                    json={"method": "POST", "url": url, "headers": {"X-Trace": "t-1"}, "body": "hello"})
    assert response.status_code == 200, response.get_json()
    relayed = response.get_json()
    assert relayed["status_code"] == 200
    assert json.loads(relayed["body"]) == {"method": "POST", "body": "hello", "trace": "t-1"}
    assert SECRET not in response.get_data(as_text=True)
    assert ["X-Echo", SECRET] not in relayed["headers"]


def test_relay_is_off_without_allowed_hosts_and_refuses_other_hosts(user, make_authenticator, weather):
    call = {"method": "GET", "url": "https://elsewhere.example/v1"}
    assert_error(user("POST", f"/authenticators/{weather.id}/relay", json=call), 403, "relay_disabled")
    limited = make_authenticator("Maps", secrets={"value": "m"}, allowed_hosts=["maps.example"])
    assert_error(user("POST", f"/authenticators/{limited.id}/relay", json=call), 403, "host_not_allowed")


# Errors and the document


def test_errors_are_json_everywhere_under_the_api(user, weather):
    assert_error(user("GET", "/nothing-here"), 404, "not_found")
    response = user("PUT", f"/authenticators/{weather.id}")
    assert_error(response, 405, "method_not_allowed")
    assert "PATCH" in response.headers["Allow"]


def test_an_unexpected_failure_is_json_and_tells_nothing_of_it(app, user, weather, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(f"failed with {SECRET}")

    monkeypatch.setattr("apiauth.api.views.credentials", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    response = user("POST", f"/authenticators/{weather.id}/credentials")
    assert_error(response, 500, "internal_error")
    assert SECRET not in response.get_data(as_text=True)


def test_the_openapi_document_is_public(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api/v1"}]
    assert set(document["paths"]) == {
        "/openapi.json", "/authenticators", "/authenticators/{authenticator_id}",
        *(f"/authenticators/{{authenticator_id}}/{action}" for action in ("test", "credentials", "report", "relay")),
    }
