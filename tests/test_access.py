"""Every route is gated: the portal's on the Domain Management privilege, the API's on a service token."""

import pytest

from apiauth.access import GATE_ATTRIBUTE
from apiauth.api import URL_PREFIX
from apiauth.api.gate import GATE_ATTRIBUTE as API_GATE_ATTRIBUTE

from .conftest import sign_in

# Routes that must stay reachable without the privilege.
UNGATED = {"auth.login", "auth.logout", "auth.health", "auth.livez", "static", "oauth.callback"}
# API routes that answer without a token.
API_PUBLIC = {"api.openapi"}


def is_api(endpoint):
    return endpoint.startswith("api.")


def routes(app, object_id=1):
    """Every (endpoint, method, URL) of the URL map, ids set to object_id."""
    for rule in app.url_map.iter_rules():
        url = rule.build({arg: object_id for arg in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def gated_routes(app, object_id=1):
    """Every route of the portal but the ungated ones."""
    for endpoint, method, url in routes(app, object_id):
        if endpoint not in UNGATED and not is_api(endpoint):
            yield endpoint, method, url


def api_routes(app, object_id=1):
    """Every route of the API but the public ones."""
    for endpoint, method, url in routes(app, object_id):
        if is_api(endpoint) and endpoint not in API_PUBLIC:
            yield endpoint, method, url


def request(client, method, url, **kwargs):
    return client.open(url, method=method, **kwargs)


def test_every_view_but_the_ungated_ones_carries_the_gate(app):
    ungated = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint not in UNGATED and not is_api(endpoint) and not getattr(view, GATE_ATTRIBUTE, False)
    ]
    assert ungated == []


def test_every_api_view_but_the_public_ones_carries_the_token_gate_and_no_other(app):
    api_views = {endpoint: view for endpoint, view in app.view_functions.items() if is_api(endpoint)}
    assert {rule.endpoint for rule in app.url_map.iter_rules() if rule.rule.startswith(URL_PREFIX)} == set(api_views)
    ungated = [e for e, view in api_views.items() if e not in API_PUBLIC and not getattr(view, API_GATE_ATTRIBUTE, None)]
    assert ungated == []
    assert [e for e, view in api_views.items() if getattr(view, GATE_ATTRIBUTE, False)] == []


@pytest.mark.parametrize("who", ["anonymous", "client"], ids=["anonymous", "signed-in admin without a token"])
def test_every_api_route_answers_401_json_without_a_token(app, request, who):
    caller = request.getfixturevalue(who)
    for endpoint, method, url in api_routes(app):
        response = caller.open(url, method=method, json={})
        assert response.status_code == 401, (endpoint, method)
        assert response.is_json, (endpoint, method)
        assert response.get_json()["error"] == "unauthorized", (endpoint, method)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), endpoint


def test_anonymous_visitors_are_sent_to_sign_in_everywhere(app, anonymous):
    for endpoint, method, url in gated_routes(app):
        data = {"csrf_token": anonymous.csrf_token()} if method == "POST" else None
        response = request(anonymous, method, url, data=data)
        assert response.status_code == 302, (endpoint, method)
        assert response.headers["Location"].startswith("/login?next="), endpoint


def test_anonymous_htmx_requests_get_401_with_hx_redirect(app, anonymous):
    for endpoint, method, url in gated_routes(app):
        data = {"csrf_token": anonymous.csrf_token()} if method == "POST" else None
        response = request(anonymous, method, url, data=data, headers={"HX-Request": "true"})
        assert response.status_code == 401, (endpoint, method)
        assert response.headers["HX-Redirect"].startswith("/login?next="), endpoint


@pytest.mark.parametrize("privilege", [None, False], ids=["no membership", "member without privilege"])
def test_users_without_the_privilege_get_403_everywhere(app, make_user, domain, privilege):
    memberships = {} if privilege is None else {domain: privilege}
    client = sign_in(app.test_client(), make_user("mallory", memberships).username)
    for endpoint, method, url in gated_routes(app):
        data = {"csrf_token": client.csrf_token()} if method == "POST" else None
        response = request(client, method, url, data=data)
        assert response.status_code == 403, (endpoint, method)
        assert "Domain Management privilege" in response.get_data(as_text=True)


def test_another_domains_authenticator_is_not_found(app, client, make_authenticator):
    from apiauth.extensions import db
    from apiauth.models import Domain

    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()
    foreign = make_authenticator("Foreign", target_domain=other, secrets={"value": "v"})
    for endpoint, method, url in gated_routes(app, object_id=foreign.id):
        if f"/{foreign.id}" not in url:
            continue
        data = {"csrf_token": client.csrf_token()} if method == "POST" else None
        assert request(client, method, url, data=data).status_code == 404, (endpoint, method)


def test_a_post_without_csrf_token_is_refused(client, make_authenticator):
    authenticator = make_authenticator("Keep me", secrets={"value": "v"})
    response = client.post(f"/authenticators/{authenticator.id}/delete", data={}, csrf=False)
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)
    assert client.get("/authenticators").get_data(as_text=True).count("Keep me") == 1


def test_an_htmx_post_with_the_csrf_header_is_accepted(client, make_authenticator):
    authenticator = make_authenticator("Copy me", secrets={"value": "v"})
    token = client.csrf_token()
    response = client.post(
        f"/authenticators/{authenticator.id}/duplicate",
        data={},
        csrf=False,
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 302


def test_an_id_too_large_for_the_database_is_not_found(client):
    assert client.get(f"/authenticators/{2**40}/edit").status_code == 404
