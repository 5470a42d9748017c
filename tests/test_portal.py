"""Behind the portal's reverse proxy: the path prefix, X-Forwarded-* and the portal's user header
honoured from trusted proxies only, embed mode, and the session cookie."""

import re

import pytest
from flask import request
from sqlalchemy import func, select

from apiauth import create_app
from apiauth.extensions import db
from apiauth.models import LoginAttempt, User, UserSession
from apiauth.service_tokens import create_service_token

from .conftest import PASSWORD, TEST_KEY, sign_in

PREFIX = "/portal/apiauth"
PORTAL = "https://portal.example.com"
PROXY_ADDRESS = "10.1.2.3"
OUTSIDER_ADDRESS = "192.0.2.7"
PORTAL_SETTINGS = {
    "TRUSTED_PROXIES": ["10.0.0.0/8", "::1"],
    "TRUSTED_USER_HEADER": "X-Remote-User",
    "FRAME_ANCESTORS": [PORTAL],
}
# Every URL a page hands the browser: links, forms, scripts, styles, htmx requests.
URL_ATTRIBUTE = re.compile(r'\b(?:href|src|action|hx-get|hx-post|value)="([^"]*)"')


@pytest.fixture
def app_settings():
    """The app as an operator configures it behind a portal."""
    return PORTAL_SETTINGS


def proxied(client, peer=PROXY_ADDRESS, proto="https", user=None):
    """Make every request of a test client come from a peer that adds the portal's proxy headers.

    The requests carry a Referer of the page they come from, as a browser's do (Flask-WTF checks it over https).
    """
    client.environ_base.update(
        {
            "REMOTE_ADDR": peer,
            "HTTP_REFERER": f"{PORTAL}{PREFIX}/authenticators",
            "HTTP_X_FORWARDED_FOR": "198.51.100.20",
            "HTTP_X_FORWARDED_PROTO": proto,
            "HTTP_X_FORWARDED_HOST": "portal.example.com",
            "HTTP_X_FORWARDED_PREFIX": PREFIX,
        }
    )
    if user is not None:
        client.environ_base["HTTP_X_REMOTE_USER"] = user
    return client


@pytest.fixture
def portal_client(app, admin):
    """The domain manager, signed in with a password through the portal's proxy."""
    return sign_in(proxied(app.test_client()), admin.username)


def local_urls(page):
    """The URLs of a page that point into this site (paths), as the browser would follow them."""
    return [url for url in URL_ATTRIBUTE.findall(page) if url.startswith("/")]


def test_every_link_form_script_and_htmx_request_of_every_page_carries_the_prefix(
    portal_client, make_authenticator, domain, admin
):
    login_authenticator = make_authenticator(
        "CRM", method="oauth2", grant_type="authorization_code", status="need_login",
        auth_url="https://id.example.com/auth", access_token_url="https://id.example.com/token", client_id="crm",
    )
    key = make_authenticator("Key", secrets={"value": "k"})
    token, _ = create_service_token(domain, "webhooks", "use")
    pages = [
        "/authenticators", "/authenticators?q=CRM", "/authenticators/new?method=oauth2",
        f"/authenticators/{login_authenticator.id}/edit", f"/authenticators/{key.id}/delete",
        f"/authenticators/{key.id}/test", "/service-tokens", f"/service-tokens/{token.id}/revoke",
    ]
    partials = ["/authenticators", "/authenticators/conditions/new", "/authenticators/extra-params/new",
                f"/authenticators/{login_authenticator.id}/status"]
    seen = []
    for path, htmx in [(path, False) for path in pages] + [(path, True) for path in partials]:
        response = portal_client.get(path, headers={"HX-Request": "true"} if htmx else {})
        assert response.status_code == 200, path
        urls = local_urls(response.get_data(as_text=True))
        assert all(url.startswith(PREFIX + "/") for url in urls), (path, urls)
        seen += urls
    assert f"{PREFIX}/static/htmx-2.0.11.min.js" in seen
    assert f"{PREFIX}/oauth/login/{login_authenticator.id}" in seen
    assert f"{PREFIX}/authenticators/{key.id}/test" in seen


def test_redirects_carry_the_prefix_and_sign_in_comes_back_to_the_prefixed_page(app, admin):
    client = proxied(app.test_client())
    response = client.get("/authenticators?q=x")
    assert response.status_code == 302
    assert response.location == f"{PREFIX}/login?next={PREFIX}/authenticators?q%3Dx"
    htmx = client.get("/authenticators", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == f"{PREFIX}/login?next={PREFIX}/authenticators"
    signed_in = client.post(f"/login?next={PREFIX}/authenticators?q%3Dx",
                            data={"username": admin.username, "password": PASSWORD})
    assert signed_in.location == f"{PREFIX}/authenticators?q=x"
    assert client.get("/").location == f"{PREFIX}/authenticators"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/other-app/authenticators",
                                    "/\\evil.example", f"{PORTAL}/page"])
def test_sign_in_refuses_to_send_the_user_outside_the_app(app, admin, target):
    client = proxied(app.test_client())
    response = client.post("/login", query_string={"next": target},
                           data={"username": admin.username, "password": PASSWORD})
    assert response.location == f"{PREFIX}/authenticators"


def test_the_callback_url_is_the_portals_public_one(portal_client, make_authenticator):
    authenticator = make_authenticator("CRM", method="oauth2", grant_type="authorization_code",
                                       auth_url="https://id.example.com/auth", client_id="crm")
    page = portal_client.get(f"/authenticators/{authenticator.id}/edit")
    assert f'value="https://portal.example.com{PREFIX}/oauth/callback"' in page.get_data(as_text=True)


@pytest.fixture
def probe(tmp_path, database_url, app):
    """An app set up as the test app, on its database, with a route that answers what it saw of a request."""
    probe = create_app({"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": database_url,
                        "SECRET_KEY": "x", "ENCRYPTION_KEYS": [TEST_KEY], **PORTAL_SETTINGS})
    probe.add_url_rule("/seen", "seen", lambda: {
        "remote_addr": request.remote_addr, "url": request.url, "secure": request.is_secure,
        "forwarded_for": request.headers.get("X-Forwarded-For"), "user": request.headers.get("X-Remote-User"),
    })
    yield probe
    with probe.app_context():
        db.engine.dispose()


def test_a_forged_forwarded_header_from_an_untrusted_peer_changes_nothing(probe):
    outsider = proxied(probe.test_client(), peer=OUTSIDER_ADDRESS, user="alice")
    assert outsider.get("/seen").json == {
        "remote_addr": OUTSIDER_ADDRESS, "url": "http://localhost/seen", "secure": False,
        "forwarded_for": None, "user": None,
    }
    proxy = proxied(probe.test_client(), user="alice")
    assert proxy.get("/seen").json == {
        "remote_addr": "198.51.100.20", "url": f"https://portal.example.com{PREFIX}/seen", "secure": True,
        "forwarded_for": "198.51.100.20", "user": "alice",
    }


def test_untrusted_by_default_every_forwarded_header_is_ignored(anonymous):
    proxied(anonymous, peer="127.0.0.1")
    assert anonymous.get("/authenticators").location == "/login?next=/authenticators"


def test_bad_settings_stop_the_app_with_a_clear_message(tmp_path, database_url):
    base = {"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "x",
            "ENCRYPTION_KEYS": [TEST_KEY]}
    with pytest.raises(ValueError, match="APIAUTH_TRUSTED_PROXIES: .*10.0.0.300"):
        create_app({**base, "TRUSTED_PROXIES": ["10.0.0.300"]})
    with pytest.raises(ValueError, match="APIAUTH_FRAME_ANCESTORS: .*is not a CSP source"):
        create_app({**base, "FRAME_ANCESTORS": ["https://portal.example.com;script-src"]})
    with pytest.raises(ValueError, match="APIAUTH_THEME_URL: .*neither an http"):
        create_app({**base, "THEME_URL": "https://portal.example.com;script-src/x.css"})


# The portal's user header


def user_named(username):
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.username == username))


def test_the_portal_user_is_created_on_first_sight_without_privilege_or_password(app, domain):
    client = proxied(app.test_client(), user="bob")
    response = client.get("/authenticators")
    assert response.status_code == 403
    assert "You need the Domain Management privilege" in response.get_data(as_text=True)
    bob = user_named("bob")
    assert bob.memberships == [] and bob.password_hash is None and not bob.check_password("")
    result = app.test_cli_runner().invoke(args=["users", "grant", "bob", "--domain", domain.name])
    assert result.exit_code == 0, result.output
    assert "bob now holds Domain Management in Acme" in result.output
    page = client.get("/authenticators")
    assert page.status_code == 200
    assert ">bob<" in page.get_data(as_text=True)


def test_a_portal_user_cannot_sign_in_with_a_password(app, domain):
    proxied(app.test_client(), user="bob").get("/authenticators")
    for password in ("", "x"):
        response = app.test_client().post("/login", data={"username": "bob", "password": password})
        assert response.status_code in (200, 401) and "Sign in to apiauth" in response.get_data(as_text=True)


def test_the_user_header_from_anywhere_but_a_trusted_proxy_is_ignored(app, admin):
    outsider = proxied(app.test_client(), peer=OUTSIDER_ADDRESS, user=admin.username)
    assert outsider.get("/authenticators").location.startswith("/login?next=")
    assert user_named(admin.username).username == admin.username
    proxied(app.test_client(), peer=OUTSIDER_ADDRESS, user="mallory").get("/authenticators")
    assert user_named("mallory") is None


def test_the_header_wins_over_the_session_when_the_portal_switched_users(portal_client, make_user, domain):
    make_user("bob", {domain: True})
    assert ">alice<" in portal_client.get("/authenticators").get_data(as_text=True)
    portal_client.environ_base["HTTP_X_REMOTE_USER"] = "bob"
    page = portal_client.get("/authenticators").get_data(as_text=True)
    assert ">bob<" in page and ">alice<" not in page


def test_a_portal_sign_in_is_a_server_side_session_and_is_audited(app, make_user, domain, admin):
    make_user("bob", {domain: True})
    client = proxied(app.test_client(), user="bob")
    assert client.get("/authenticators").status_code == 200
    bob = user_named("bob")
    assert db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == bob.id)) == 1
    audit = sign_in(app.test_client(), admin.username).get("/audit?action=signed+in").get_data(as_text=True)
    assert "bob" in audit


def test_a_form_opened_by_the_previous_portal_user_is_refused_for_the_next(app, make_user, domain):
    make_user("bob", {domain: True})
    make_user("carol", {domain: True})
    client = proxied(app.test_client(), user="bob")
    token = client.csrf_token()
    client.environ_base["HTTP_X_REMOTE_USER"] = "carol"
    response = client.post("/authenticators", data={"csrf_token": token, "method": "api_key", "name": "Sneaky",
                                                    "key": "X-Key", "value": "v", "add_to": "header"})
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)


def test_csrf_protection_holds_for_portal_users(app, make_user, domain):
    make_user("bob", {domain: True})
    client = proxied(app.test_client(), user="bob")
    form = {"method": "api_key", "name": "Orders", "key": "X-Key", "value": "v", "add_to": "header"}
    refused = client.post("/authenticators", data=form, csrf=False)
    assert refused.status_code == 400 and "The form expired" in refused.get_data(as_text=True)
    no_referer = client.post("/authenticators", data=form, headers={"Referer": ""})
    assert no_referer.status_code == 400, "over https a POST must come with a Referer of this site"
    cross_site = client.post("/authenticators", data=form, headers={"Referer": "https://evil.example/"})
    assert cross_site.status_code == 400
    created = client.post("/authenticators", data=form)
    assert created.status_code == 302, created.get_data(as_text=True)
    assert created.location.startswith(f"{PREFIX}/authenticators/")


@pytest.mark.parametrize("header, status", [("b" * 151, 400), ("bob\x01", 400), ("\u00e9lo\u00efse", 403)])
def test_user_names_from_the_header_are_checked(app, header, status):
    client = proxied(app.test_client())
    client.environ_base["HTTP_X_REMOTE_USER"] = header.encode().decode("latin-1")
    assert client.get("/authenticators").status_code == status
    if status == 403:
        assert user_named(header) is not None


# Embed mode


def site_header_shown(client, path="/authenticators"):
    return 'class="site-header"' in client.get(path).get_data(as_text=True)


def test_embed_mode_hides_our_header_for_the_session_and_embed_0_brings_it_back(portal_client):
    assert site_header_shown(portal_client)
    assert not site_header_shown(portal_client, "/authenticators?embed=1")
    assert not site_header_shown(portal_client, "/service-tokens")
    assert site_header_shown(portal_client, "/authenticators?embed=0")
    assert site_header_shown(portal_client)


def test_embed_mode_survives_signing_in(app, admin):
    client = proxied(app.test_client())
    client.get("/authenticators?embed=1")
    sign_in(client, admin.username)
    assert not site_header_shown(client)


# The session cookie


def session_cookie(response):
    """The Set-Cookie header of the session, as the browser receives it."""
    cookies = [value for value in response.headers.getlist("Set-Cookie") if "session=" in value]
    assert len(cookies) == 1, response.headers
    return cookies[0]


def test_over_https_from_the_proxy_the_cookie_is_host_prefixed_secure_httponly_and_cross_site(app, admin):
    cookie = session_cookie(proxied(app.test_client()).get("/login"))
    assert cookie.startswith("__Host-apiauth_session=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; Path=/" in cookie
    assert "; SameSite=None" in cookie and "Domain=" not in cookie


def test_a_forged_https_from_an_outsider_gets_no_host_prefix(app):
    cookie = session_cookie(proxied(app.test_client(), peer=OUTSIDER_ADDRESS).get("/login"))
    assert cookie.startswith("apiauth_session=")


@pytest.mark.parametrize("app_settings", [{}], ids=["no embedding"])
def test_without_embedding_the_cookie_stays_same_site_and_plain_http_gets_no_secure(app):
    cookie = session_cookie(app.test_client().get("/login"))
    assert cookie.startswith("apiauth_session=")
    assert "; HttpOnly" in cookie and "; SameSite=Lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize("app_settings", [{"TRUSTED_PROXIES": ["10.0.0.0/8"], "SESSION_COOKIE_HTTPONLY": False}])
def test_the_cookie_is_httponly_whatever_the_config_says(app):
    cookie = session_cookie(proxied(app.test_client()).get("/login"))
    assert cookie.startswith("__Host-apiauth_session=")
    assert "; HttpOnly" in cookie and "; SameSite=Lax" in cookie and "; Secure" in cookie


@pytest.mark.oidc
@pytest.mark.parametrize("target, kept", [
    (f"{PORTAL}/apps/apiauth", True), (f"{PREFIX}/authenticators?q=C", True),
    ("https://evil.example/apps/apiauth", False), ("http://portal.example.com/apps/apiauth", False),
])
def test_a_login_from_the_frame_returns_to_the_portal_page_or_the_app_never_elsewhere(
    portal_client, make_authenticator, oidc_provider, target, kept
):
    authenticator = make_authenticator(
        "CRM", method="oauth2", grant_type="authorization_code", client_id="basic-client",
        auth_url=oidc_provider.authorization_endpoint, access_token_url=oidc_provider.token_endpoint,
    )
    response = portal_client.get(f"/oauth/login/{authenticator.id}", query_string={"next": target})
    assert response.status_code == 302 and response.location.startswith(oidc_provider.authorization_endpoint)
    db.session.expire_all()
    attempt = db.session.scalar(select(LoginAttempt))
    assert attempt.return_to == (target if kept else f"{PREFIX}/authenticators")
