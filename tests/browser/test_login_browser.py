"""Login in a real browser against a real oidc-provider: the popup, the same-window fallback,
the provider refusing, and Disconnect."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from apiauth.extensions import db
from apiauth.models import Authenticator, TokenState
from tests.support.oidc import headless_authorize

from .pages import assert_not_reloaded, mark_page, row_of, status_cell

pytestmark = [pytest.mark.browser, pytest.mark.oidc]

# oidc-provider's dev pages @import a web font from Google; this network may take seconds to refuse it.
NOT_LOCAL = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")

CLIENTS = {
    "authorization_code": ("basic-client", "basic-secret", "basic_header"),
    "authorization_code_pkce": ("public-client", None, "none"),
}


@pytest.fixture(autouse=True)
def local_only(page):
    """Refuse, at once, every request the browser would send beyond this machine."""
    page.context.route(NOT_LOCAL, lambda route: route.abort())


@pytest.fixture
def provider(oidc_provider_factory, live_server):
    """An oidc-provider whose clients accept exactly the Callback URL the live app builds."""
    provider = oidc_provider_factory(redirect_uris=[f"{live_server}/oauth/callback"])
    yield provider
    provider.stop()


@pytest.fixture
def login_authenticator(make_authenticator, provider):
    """Make an authorization-code authenticator at the provider, in Need to Login."""

    def make(grant="authorization_code", name="CRM"):
        client_id, secret, client_auth = CLIENTS[grant]
        return make_authenticator(
            name, method="oauth2", grant_type=grant, status="need_login",
            auth_url=provider.authorization_endpoint, access_token_url=provider.token_endpoint,
            client_id=client_id, client_authentication=client_auth, scope="openid offline_access api:read",
            extra_params=[{"target": "authorization", "name": "prompt", "value": "consent"}],
            secrets={"client_secret": secret} if secret else {},
        )

    return make


def sign_in_at_provider(window, login="alice"):
    """Fill in oidc-provider's dev login form, any login and password will do."""
    expect(window.get_by_role("heading", name="Sign-in")).to_be_visible()
    window.locator("input[name=login]").fill(login)
    window.locator("input[name=password]").fill("any password")
    window.get_by_role("button", name="Sign-in").click()
    expect(window.get_by_role("heading", name="Authorize")).to_be_visible()


def fresh(authenticator):
    db.session.expire_all()
    return db.session.get(Authenticator, authenticator.id)


def authorization_requests(page, provider):
    """Record the query of every request the browser sends to the provider's authorization endpoint."""
    seen = []
    page.context.on(
        "request",
        lambda request: request.url.startswith(provider.authorization_endpoint + "?")
        and seen.append(parse_qs(urlsplit(request.url).query)),
    )
    return seen


@pytest.mark.parametrize("grant", ["authorization_code", "authorization_code_pkce"])
def test_login_in_a_popup_connects_and_the_pane_shows_it_in_place(
    admin_page, login_authenticator, provider, live_server, grant
):
    page = admin_page
    authenticator = login_authenticator(grant)
    sent = authorization_requests(page, provider)
    page.goto("/authenticators")
    cell = status_cell(page, authenticator)
    login = row_of(page, "CRM").get_by_role("link", name="Login", exact=True)
    expect(cell).to_contain_text("Need to Login")
    expect(login).to_be_visible()
    mark_page(page)

    with page.expect_popup() as popup_info:
        login.click()
    popup = popup_info.value

    sign_in_at_provider(popup)
    with popup.expect_event("close"):
        popup.get_by_role("button", name="Continue").click()

    expect(cell.locator(".badge")).to_have_text("Connected")
    expect(login).to_have_count(0)
    assert_not_reloaded(page)
    assert page.evaluate("window.refreshEvents") >= 1, "the popup's message did not trigger a refresh"
    assert page.url == f"{live_server}/authenticators"
    assert len(sent) == 1
    query = sent[0]
    assert query["redirect_uri"] == [f"{live_server}/oauth/callback"]
    assert query["prompt"] == ["consent"]
    assert ("code_challenge_method" in query) == (grant == "authorization_code_pkce")
    state = db.session.get(TokenState, authenticator.id)
    assert state.access_token_encrypted and state.refresh_token_encrypted, "offline_access gave no refresh token"


def test_where_popups_are_blocked_login_runs_in_the_same_window_and_comes_back(
    admin_page, login_authenticator, provider, live_server
):
    page = admin_page
    page.add_init_script("window.open = () => null")
    authenticator = login_authenticator()
    page.goto("/authenticators?q=CR")
    expect(status_cell(page, authenticator)).to_contain_text("Need to Login")

    row_of(page, "CRM").get_by_role("link", name="Login", exact=True).click()

    page.wait_for_url(f"{provider.issuer}/**")
    assert len(page.context.pages) == 1
    sign_in_at_provider(page)
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url(f"{live_server}/authenticators?q=CR")
    expect(page.get_by_role("status")).to_have_text("“CRM” is connected.")
    expect(status_cell(page, authenticator).locator(".badge")).to_have_text("Connected")
    expect(row_of(page, "CRM").get_by_role("link", name="Login", exact=True)).to_have_count(0)
    assert "code=" not in page.url and "state=" not in page.url


def test_the_provider_refusing_shows_login_failed_in_the_popup_and_failed_in_the_pane(
    admin_page, login_authenticator
):
    page = admin_page
    authenticator = login_authenticator()
    page.goto("/authenticators")
    cell = status_cell(page, authenticator)
    expect(cell).to_contain_text("Need to Login")
    mark_page(page)

    with page.expect_popup() as popup_info:
        row_of(page, "CRM").get_by_role("link", name="Login", exact=True).click()
    popup = popup_info.value
    sign_in_at_provider(popup)
    popup.get_by_role("link", name="[ Cancel ]").click()

    expect(popup.get_by_role("heading", level=1)).to_have_text("Login failed")
    expect(popup.locator("code.reason")).to_have_text("access_denied")
    expect(popup.locator("#login-result")).to_contain_text("End-User aborted interaction")
    assert not popup.is_closed(), "a failed Login's popup should stay open to show why"
    expect(cell.locator(".badge")).to_have_text("Failed")
    expect(cell.locator(".reason")).to_have_text("access_denied")
    expect(cell.get_by_role("link", name="Login", exact=True)).to_be_visible()
    assert_not_reloaded(page)
    assert fresh(authenticator).status_reason == "access_denied"


def test_disconnect_on_the_edit_page_revokes_and_needs_login_again(
    admin_page, login_authenticator, provider, live_server
):
    page = admin_page
    authenticator = login_authenticator()
    # Given a connected authenticator: log in with this browser's session, the dev pages driven over HTTP.
    started = page.request.get(f"/oauth/login/{authenticator.id}", max_redirects=0)
    assert started.status == 302
    page.goto(headless_authorize(started.headers["location"], f"{live_server}/oauth/callback"))
    expect(page.get_by_role("status")).to_have_text("“CRM” is connected.")

    page.goto(f"/authenticators/{authenticator.id}/edit")
    editor_status = page.locator("#editor-status")
    expect(editor_status.locator(".badge")).to_have_text("Connected")
    provider.reset_stats()

    page.get_by_role("button", name="Disconnect").click()

    expect(page.get_by_role("status")).to_have_text("“CRM” is disconnected: it needs a Login again.")
    expect(page).to_have_url(f"{live_server}/authenticators/{authenticator.id}/edit")
    expect(editor_status.locator(".badge")).to_have_text("Need to Login")
    expect(editor_status.get_by_role("link", name="Login", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Disconnect")).to_have_count(0)
    assert provider.stats()["revocation"] == 2
    assert fresh(authenticator).status == "need_login"
