"""Service tokens in the portal and on the command line, and the editor's relay and last-use lines."""

import hashlib
import re

import pytest

from apiauth.extensions import db
from apiauth.models import AuditEvent, Authenticator, Domain, ServiceToken
from apiauth.service_tokens import create_service_token

TOKEN_PATTERN = re.compile(r'<pre class="response-body" id="service-token-value">(apiauth_[A-Za-z0-9_-]+)</pre>')


def created_token(page):
    """Read the token from the page that shows it once."""
    match = TOKEN_PATTERN.search(page)
    assert match, page
    return match.group(1)


def api_status(app, token, path="/authenticators"):
    return app.test_client().get(f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"}).status_code


def stored_tokens():
    db.session.expire_all()
    return db.session.scalars(db.select(ServiceToken)).all()


def test_the_header_links_to_the_service_tokens(client):
    page = client.get("/authenticators").get_data(as_text=True)
    assert '<a href="/service-tokens">Service tokens</a>' in page


def test_a_new_token_is_shown_once_and_stored_only_as_a_hash(app, client):
    response = client.post("/service-tokens", data={"name": "billing", "scope": "use", "authenticators": ""})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "Service token “billing” created" in page
    assert "it is shown only this once" in page
    token = created_token(page)
    [stored] = stored_tokens()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(stored.token_prefix) and len(token) > len(stored.token_prefix) + 20
    listing = client.get("/service-tokens").get_data(as_text=True)
    assert f"<code>{stored.token_prefix}…</code>" in listing
    assert token not in listing
    assert "All of the domain" in listing and "by alice" in listing
    assert api_status(app, token) == 200


def test_a_token_can_be_limited_to_some_authenticators(app, client, make_authenticator):
    weather = make_authenticator("Weather", secrets={"value": "v"})
    maps = make_authenticator("Maps", secrets={"value": "m"})
    page = client.post("/service-tokens", data={"name": "maps-only", "scope": "manage", "authenticators": "maps\n"})
    token = created_token(page.get_data(as_text=True))
    [stored] = stored_tokens()
    assert [a.name for a in stored.authenticators] == ["Maps"] and stored.scope == "manage"
    assert api_status(app, token, f"/authenticators/{maps.id}") == 200
    assert api_status(app, token, f"/authenticators/{weather.id}") == 403


@pytest.mark.parametrize(
    "form, message",
    [
        ({"name": "  ", "scope": "use"}, "Name the token after the service that uses it."),
        ({"name": "ci", "scope": "use", "authenticators": "Nope\nNeither"}, "No authenticator in this domain is named “Nope”, “Neither”."),
        ({"name": "ci", "scope": "root"}, "Not a valid choice."),
    ],
    ids=["no name", "unknown authenticators", "unknown scope"],
)
def test_a_token_form_with_mistakes_says_what_to_fix(client, form, message):
    response = client.post("/service-tokens", data=form)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert stored_tokens() == []


def test_token_names_are_unique_in_a_domain(client):
    client.post("/service-tokens", data={"name": "billing", "scope": "use"})
    response = client.post("/service-tokens", data={"name": "Billing", "scope": "use"})
    assert response.status_code == 422
    assert "Another service token of this domain has this name" in response.get_data(as_text=True)


def test_a_revoked_token_stops_working_and_stays_listed(app, client):
    token = created_token(client.post("/service-tokens", data={"name": "billing", "scope": "use"}).get_data(as_text=True))
    [stored] = stored_tokens()
    confirm = client.get(f"/service-tokens/{stored.id}/revoke").get_data(as_text=True)
    assert "Revoke service token “billing”?" in confirm
    response = client.post(f"/service-tokens/{stored.id}/revoke", data={})
    assert response.status_code == 302
    listing = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Service token “billing” revoked. Calls with it now answer 401." in listing
    assert "Revoked 20" in listing
    assert api_status(app, token) == 401


def test_another_domains_token_is_not_found(client):
    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()
    foreign, _ = create_service_token(other, "theirs", "use")
    assert client.get(f"/service-tokens/{foreign.id}/revoke").status_code == 404
    assert client.post(f"/service-tokens/{foreign.id}/revoke", data={}).status_code == 404
    assert "theirs" not in client.get("/service-tokens").get_data(as_text=True)
    assert stored_tokens()[0].active


# Command line


def run(app, *args):
    return app.test_cli_runner().invoke(args=["tokens", "create", *args])


def test_the_command_line_creates_a_token_and_prints_it_once(app, domain, make_authenticator):
    maps = make_authenticator("Maps", secrets={"value": "m"})
    result = run(app, "--domain", "Acme", "--name", "ci", "--scope", "use", "--authenticator", "MAPS")
    assert result.exit_code == 0, result.output
    assert "Created service token ci (use) in domain Acme." in result.output
    token = re.search(r"Token \(shown once\): (\S+)", result.output).group(1)
    [stored] = stored_tokens()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.authenticators == [maps] and stored.created_by == "command line"
    assert api_status(app, token, f"/authenticators/{maps.id}") == 200


@pytest.mark.parametrize(
    "args, message",
    [
        (["--domain", "Nowhere", "--name", "ci", "--scope", "use"], "No domain named 'Nowhere'."),
        (["--domain", "Acme", "--name", "ci", "--scope", "use", "--authenticator", "Nope"], "No authenticator named 'Nope' in domain 'Acme'."),
        (["--domain", "Acme", "--name", "ci", "--scope", "admin"], "'admin' is not one of 'use', 'manage'."),
    ],
    ids=["unknown domain", "unknown authenticator", "unknown scope"],
)
def test_the_command_line_refuses_what_it_cannot_do(app, domain, args, message):
    result = run(app, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert stored_tokens() == []


def test_the_command_line_refuses_a_name_taken(app, domain):
    assert run(app, "--domain", "Acme", "--name", "ci", "--scope", "use").exit_code == 0
    result = run(app, "--domain", "Acme", "--name", "CI", "--scope", "manage")
    assert result.exit_code != 0 and "already has a service token named 'CI'" in result.output


# The editor: allowed hosts for the relay, and the last use


API_KEY_FORM = {"method": "api_key", "name": "Weather", "key": "X-API-Key", "value": "k-123", "add_to": "header"}


def stored(name):
    db.session.expire_all()
    return db.session.scalar(db.select(Authenticator).where(Authenticator.name == name))


def test_allowed_hosts_are_saved_one_per_line_and_audited(client):
    form = {**API_KEY_FORM, "allowed_hosts": "API.Example.com\n\n127.0.0.1\n[::1]\nbücher.example\napi.example.com"}
    assert client.post("/authenticators", data=form).status_code == 302
    weather = stored("Weather")
    assert weather.allowed_hosts == ["api.example.com", "127.0.0.1", "::1", "xn--bcher-kva.example"]
    page = client.get(f"/authenticators/{weather.id}/edit").get_data(as_text=True)
    assert "Allowed hosts (relay)" in page
    assert "api.example.com\n127.0.0.1\n::1\nxn--bcher-kva.example</textarea>" in page
    assert '<span id="last-use">not used by any service yet</span>' in page


def test_changing_allowed_hosts_keeps_the_status(client, make_authenticator):
    weather = make_authenticator("Weather", secrets={"value": "k"}, status="succeeded")
    response = client.post(f"/authenticators/{weather.id}",
                           data={**API_KEY_FORM, "value": "", "version": "1", "allowed_hosts": "api.example.com"})
    assert response.status_code == 302
    assert (stored("Weather").allowed_hosts, stored("Weather").status) == (["api.example.com"], "succeeded")
    event = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event.changes == ["allowed_hosts"]


@pytest.mark.parametrize("host", ["https://api.example.com", "api.example.com:8443", "api.example.com/v1", "two words", "999.1.1.1", "-bad-.example"])
def test_an_allowed_host_must_be_a_host_name(client, host):
    response = client.post("/authenticators", data={**API_KEY_FORM, "allowed_hosts": f"ok.example\n{host}"})
    assert response.status_code == 422
    assert f"“{host}” is not a host name" in response.get_data(as_text=True)
    assert stored("Weather") is None
