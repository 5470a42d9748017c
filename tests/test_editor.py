"""Adding, editing, duplicating and deleting authenticators through their forms."""

import re

import pytest

from apiauth.extensions import db
from apiauth.models import AuditEvent, Authenticator

API_KEY_FORM = {"method": "api_key", "name": "Weather", "key": "X-API-Key", "value": "k-123", "add_to": "header"}
BASIC_FORM = {"method": "basic", "name": "Legacy ERP", "username": "erp-user", "password": "erp-pass"}
OAUTH_FORM = {
    "method": "oauth2",
    "name": "CRM",
    "grant_type": "client_credentials",
    "access_token_url": "https://auth.example.com/oauth/token",
    "client_id": "crm-client",
    "client_secret": "crm-secret",
    "client_authentication": "basic_header",
    "scope": "read write",
    "token_prefix": "Bearer",
}


def stored(name):
    db.session.expire_all()
    return db.session.scalar(db.select(Authenticator).where(Authenticator.name == name))


def field_value(page, name):
    match = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', page) or re.search(
        rf'value="([^"]*)"[^>]*name="{re.escape(name)}"', page
    )
    return match and match.group(1)


@pytest.mark.parametrize(
    "form, secret_field, secret",
    [(API_KEY_FORM, "value", "k-123"), (BASIC_FORM, "password", "erp-pass"), (OAUTH_FORM, "client_secret", "crm-secret")],
    ids=["api_key", "basic", "oauth2"],
)
def test_each_method_is_created_from_its_form(client, form, secret_field, secret):
    response = client.post("/authenticators", data=form)
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Authenticator “{form['name']}” created." in page
    assert "A value is set. Leave blank to keep it." in page
    assert secret not in page
    authenticator = stored(form["name"])
    assert authenticator.method == form["method"]
    assert authenticator.get_secret(secret_field) == secret
    assert authenticator.status == "not_tested"


def test_the_new_form_of_each_method_shows_its_fields(client):
    assert 'name="key"' in client.get("/authenticators/new?method=api_key").get_data(as_text=True)
    assert 'name="username"' in client.get("/authenticators/new?method=basic").get_data(as_text=True)
    oauth = client.get("/authenticators/new?method=oauth2").get_data(as_text=True)
    for name in ("grant_type", "access_token_url", "client_id", "client_secret", "client_authentication", "scope", "audience", "resource", "token_prefix"):
        assert f'name="{name}"' in oauth, name


def test_an_unknown_method_is_a_clear_error(client):
    response = client.get("/authenticators/new?method=carrier-pigeon")
    assert response.status_code == 400
    assert "Unknown method." in response.get_data(as_text=True)


def test_an_authorization_code_grant_needs_login_after_creation(client):
    form = {**OAUTH_FORM, "grant_type": "authorization_code", "auth_url": "https://auth.example.com/authorize"}
    client.post("/authenticators", data=form)
    assert stored("CRM").status == "need_login"
    assert stored("CRM").auth_url == "https://auth.example.com/authorize"


def test_a_public_pkce_client_needs_no_secret(client):
    form = {**OAUTH_FORM, "grant_type": "authorization_code_pkce", "auth_url": "https://auth.example.com/authorize",
            "client_secret": "", "client_authentication": "none", "code_challenge_method": "S256"}
    assert client.post("/authenticators", data=form).status_code == 302
    assert not stored("CRM").has_secret("client_secret")


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"name": ""}, "name", "Give the authenticator a name."),
        ({"access_token_url": "/oauth/token"}, "access_token_url", "Enter an absolute URL starting with https:// or http://."),
        ({"access_token_url": "ftp://auth.example.com/token"}, "access_token_url", "Enter an absolute URL"),
        ({"grant_type": "authorization_code", "auth_url": ""}, "auth_url", "Enter the Authorization URL"),
        ({"grant_type": "password", "username": ""}, "username", "Enter the user name: the password grant sends it."),
        ({"client_secret": ""}, "client_secret", "Enter the client secret"),
        ({"client_id": ""}, "client_id", "Enter the client ID."),
        ({"conditions-0-source": "body", "conditions-0-operator": "matches", "conditions-0-value": "(unclosed"},
         "conditions-0-value", "This regular expression does not compile"),
        ({"conditions-0-source": "header", "conditions-0-operator": "equals", "conditions-0-value": "x"},
         "conditions-0-name", "Name the header this condition looks at."),
        ({"conditions-0-source": "status_code", "conditions-0-operator": "greater_than", "conditions-0-value": "lots"},
         "conditions-0-value", "Enter a number to compare with."),
    ],
)
def test_invalid_input_gets_a_message_beside_the_field(client, changes, field, message):
    response = client.post("/authenticators", data={**OAUTH_FORM, **changes})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert re.search(rf'<p class="field-error" id="{re.escape(field)}-error">{re.escape(message)}', page), page
    assert stored(OAUTH_FORM["name"]) is None


def test_a_rejected_form_keeps_what_was_typed_but_not_secrets(client):
    form = {**OAUTH_FORM, "access_token_url": "not a url", "description": "For the CRM sync",
            "conditions-0-source": "body", "conditions-0-operator": "contains", "conditions-0-value": "denied"}
    page = client.post("/authenticators", data=form).get_data(as_text=True)
    assert field_value(page, "name") == "CRM"
    assert field_value(page, "client_id") == "crm-client"
    assert field_value(page, "scope") == "read write"
    assert field_value(page, "access_token_url") == "not a url"
    assert field_value(page, "conditions-0-value") == "denied"
    assert "For the CRM sync" in page
    assert "crm-secret" not in page


def test_names_are_unique_in_a_domain_ignoring_case(client, make_authenticator):
    make_authenticator("Weather", secrets={"value": "v"})
    response = client.post("/authenticators", data={**API_KEY_FORM, "name": "WEATHER"})
    assert response.status_code == 422
    assert "Another authenticator in this domain already has this name." in response.get_data(as_text=True)


def test_the_same_name_is_fine_in_another_domain(client, make_authenticator):
    from apiauth.models import Domain

    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()
    make_authenticator("Weather", secrets={"value": "v"}, target_domain=other)
    assert client.post("/authenticators", data=API_KEY_FORM).status_code == 302


def edit_form(client, authenticator):
    """Return the edit form's current values, as a browser would submit them."""
    page = client.get(f"/authenticators/{authenticator.id}/edit").get_data(as_text=True)
    return page, {"version": field_value(page, "version")}


def test_editing_keeps_a_secret_left_blank(client, make_authenticator):
    authenticator = make_authenticator("Weather", secrets={"value": "old-value"})
    _, state = edit_form(client, authenticator)
    form = {**API_KEY_FORM, "value": "", "key": "X-Key", **state}
    response = client.post(f"/authenticators/{authenticator.id}", data=form)
    assert response.status_code == 302
    authenticator = stored("Weather")
    assert authenticator.key == "X-Key"
    assert authenticator.get_secret("value") == "old-value"


def test_editing_credentials_resets_the_status(client, make_authenticator):
    authenticator = make_authenticator("Weather", secrets={"value": "old"}, status="failed", status_reason="http_401")
    _, state = edit_form(client, authenticator)
    client.post(f"/authenticators/{authenticator.id}", data={**API_KEY_FORM, "value": "new", **state})
    assert stored("Weather").status == "not_tested"


def test_renaming_keeps_the_status(client, make_authenticator):
    authenticator = make_authenticator("Weather", secrets={"value": "v"}, status="succeeded")
    _, state = edit_form(client, authenticator)
    client.post(f"/authenticators/{authenticator.id}", data={**API_KEY_FORM, "name": "Weather EU", "value": "", **state})
    assert stored("Weather EU").status == "succeeded"


def test_the_second_of_two_concurrent_edits_is_refused_and_shows_what_changed(app, client, make_user, domain, make_authenticator):
    from .conftest import sign_in

    authenticator = make_authenticator("Weather", secrets={"value": "v"})
    bob = sign_in(app.test_client(), make_user("bob", {domain: True}).username)
    _, alice_state = edit_form(client, authenticator)
    _, bob_state = edit_form(bob, authenticator)

    assert bob.post(f"/authenticators/{authenticator.id}", data={**API_KEY_FORM, "key": "X-Bob", "value": "", **bob_state}).status_code == 302
    response = client.post(f"/authenticators/{authenticator.id}", data={**API_KEY_FORM, "key": "X-Alice", "value": "", **alice_state})

    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "Not saved: this authenticator changed after you opened it" in page
    assert re.search(r"bob updated it at .*, changing key", page)
    assert field_value(page, "key") == "X-Alice"
    assert stored("Weather").key == "X-Bob"

    # Having seen the conflict, saving again overwrites on purpose.
    retry = {**API_KEY_FORM, "key": "X-Alice", "value": "", "version": field_value(page, "version")}
    assert client.post(f"/authenticators/{authenticator.id}", data=retry).status_code == 302
    assert stored("Weather").key == "X-Alice"


def test_every_change_is_in_the_history_without_secret_values(client):
    client.post("/authenticators", data=API_KEY_FORM)
    authenticator = stored("Weather")
    _, state = edit_form(client, authenticator)
    client.post(f"/authenticators/{authenticator.id}", data={**API_KEY_FORM, "value": "k-456", "add_to": "query", **state})
    events = db.session.scalars(db.select(AuditEvent).where(AuditEvent.authenticator_id == authenticator.id).order_by(AuditEvent.id)).all()
    assert [(e.action, e.actor) for e in events] == [("created", "alice"), ("updated", "alice")]
    assert events[1].changes == ["add_to", "value"]
    assert events[1].domain_id == authenticator.domain_id
    page, _ = edit_form(client, authenticator)
    history = page[page.index("<h2>History</h2>"):]
    assert "add_to, value" in history and "created" in history
    assert "k-456" not in page and "k-123" not in page


def test_duplicate_copies_everything_under_a_free_name(client, make_authenticator):
    source = make_authenticator("Weather", secrets={"value": "dup-secret"}, key="X-Weather", status="succeeded")
    first = client.post(f"/authenticators/{source.id}/duplicate", data={})
    second = client.post(f"/authenticators/{source.id}/duplicate", data={})
    assert first.status_code == second.status_code == 302
    copy = stored("Weather (copy)")
    assert copy.key == "X-Weather" and copy.get_secret("value") == "dup-secret"
    assert copy.status == "not_tested"
    assert copy.value_encrypted != source.value_encrypted
    assert stored("Weather (copy 2)") is not None


def test_delete_asks_for_confirmation_then_deletes(client, make_authenticator):
    authenticator = make_authenticator("Weather", secrets={"value": "v"})
    confirm = client.get(f"/authenticators/{authenticator.id}/delete").get_data(as_text=True)
    assert "Delete “Weather”?" in confirm
    assert stored("Weather") is not None
    response = client.post(f"/authenticators/{authenticator.id}/delete", data={})
    assert response.status_code == 302
    assert "Authenticator “Weather” deleted." in client.get("/authenticators").get_data(as_text=True)
    assert stored("Weather") is None
    assert db.session.scalars(db.select(AuditEvent.action).where(AuditEvent.authenticator_name == "Weather")).all() == ["deleted"]


def test_switching_method_renders_that_methods_fields_with_what_was_typed(client):
    response = client.post("/authenticators/fields", data={"method": "basic", "name": "X", "username": "typed-user"})
    page = response.get_data(as_text=True)
    assert 'name="password"' in page and 'name="key"' not in page
    assert field_value(page, "username") == "typed-user"


@pytest.mark.parametrize(
    "grant, present, absent",
    [
        ("client_credentials", [], ["auth_url", "callback-url", "legacy"]),
        ("authorization_code", ["auth_url", "callback-url"], ["code_challenge_method", "legacy"]),
        ("authorization_code_pkce", ["auth_url", "callback-url", "code_challenge_method"], ["legacy"]),
        ("password", ["username", "password", "legacy"], ["auth_url", "callback-url"]),
    ],
)
def test_switching_grant_shows_only_what_the_grant_uses(client, grant, present, absent):
    page = client.post("/authenticators/fields?part=grant", data={**OAUTH_FORM, "grant_type": grant}).get_data(as_text=True)
    for marker in present:
        assert marker in page, marker
    for marker in absent:
        assert marker not in page, marker


def test_the_callback_url_comes_from_the_public_url(app, client):
    app.config["PUBLIC_URL"] = "https://portal.example.com/apiauth"
    page = client.post("/authenticators/fields?part=grant", data={**OAUTH_FORM, "grant_type": "authorization_code"}).get_data(as_text=True)
    assert 'value="https://portal.example.com/apiauth/oauth/callback" readonly' in page


def test_new_condition_rows_have_unique_increasing_indices(client):
    first = client.get("/authenticators/conditions/new").get_data(as_text=True)
    second = client.get("/authenticators/conditions/new").get_data(as_text=True)
    index = lambda page: int(re.search(r'name="conditions-(\d+)-source"', page).group(1))
    assert index(second) > index(first)


def test_conditions_and_extra_parameters_are_saved(client):
    form = {**OAUTH_FORM,
            "conditions-0-source": "status_code", "conditions-0-operator": "equals", "conditions-0-value": "401",
            "conditions-7-source": "header", "conditions-7-name": "X-Error", "conditions-7-operator": "matches", "conditions-7-value": "^E",
            "extra_params-0-target": "token", "extra_params-0-name": "tenant", "extra_params-0-value": "acme"}
    assert client.post("/authenticators", data=form).status_code == 302
    authenticator = stored("CRM")
    assert authenticator.conditions == [
        {"source": "status_code", "name": "", "operator": "equals", "value": "401"},
        {"source": "header", "name": "X-Error", "operator": "matches", "value": "^E"},
    ]
    assert authenticator.extra_params == [{"target": "token", "name": "tenant", "value": "acme"}]
    page, _ = edit_form(client, authenticator)
    assert field_value(page, "conditions-1-name") == "X-Error"
    assert field_value(page, "extra_params-0-value") == "acme"


def test_a_nul_character_is_refused_with_a_clear_message(client):
    response = client.post("/authenticators", data={**API_KEY_FORM, "name": "Wea\x00ther"})
    assert response.status_code == 400
    assert "A field contains a NUL character" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Authenticator.id))) == 0
