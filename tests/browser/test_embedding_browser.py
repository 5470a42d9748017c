"""apiauth framed by an intranet portal on another origin, in a real Chromium: the portal's https
reverse proxy serves it under a prefix and signs its user in by header; inside the frame an admin
adds an authenticator and logs in to a real oidc-provider, in a popup or, where popups are
blocked, in the portal's whole window. No Content-Security-Policy violation on the way."""

import os
import re

import pytest
from playwright.sync_api import expect

from apiauth.extensions import db
from apiauth.models import Authenticator, User
from tests.support.portal import PREFIX, THEME_ACCENT, USER_HEADER, running_portal

from .conftest import OUTPUT_DIR
from .live import VIEWPORT

pytestmark = [pytest.mark.browser, pytest.mark.oidc]

PORTAL_USER = "portal-alice"
NOT_LOCAL = re.compile(r"^https?://(?!(127\.0\.0\.1|localhost)[:/])")
# The framed pane: docs/screenshots/ with APIAUTH_SAVE_SCREENSHOTS=1 (docs/embedding.md shows it), else test-output/.
SCREENSHOT = (
    OUTPUT_DIR.parent / "docs" / "screenshots" if os.environ.get("APIAUTH_SAVE_SCREENSHOTS") == "1" else OUTPUT_DIR
) / "embedded.png"


@pytest.fixture
def portal():
    with running_portal() as portal:
        yield portal


@pytest.fixture
def app_settings(portal):
    """apiauth configured as the operator's guide says, for this portal."""
    return {
        "TRUSTED_PROXIES": ["127.0.0.1"],
        "TRUSTED_USER_HEADER": USER_HEADER,
        "FRAME_ANCESTORS": [portal.origin],
        "THEME_URL": f"{portal.origin}/theme.css",
    }


@pytest.fixture
def live_portal(portal, live_server):
    """The portal forwarding to the live app, with its user signed in to the portal."""
    portal.upstream = live_server
    portal.user = PORTAL_USER
    return portal


@pytest.fixture
def provider(oidc_provider_factory, live_portal):
    """An oidc-provider whose clients accept the Callback URL under the portal's prefix."""
    provider = oidc_provider_factory(redirect_uris=[f"{live_portal.app_url}/oauth/callback"])
    yield provider
    provider.stop()


@pytest.fixture
def portal_page(browser, live_portal):
    """A browser tab on the portal's page; CSP violations and script errors of any frame are collected."""
    context = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    context.route(NOT_LOCAL, lambda route: route.abort())
    context.add_init_script(
        """document.addEventListener("securitypolicyviolation", (event) =>
            console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`));"""
    )
    page = context.new_page()
    page.csp_violations, page.script_errors = [], []
    context.on("console", lambda message: is_csp_violation(message.text) and page.csp_violations.append(message.text))
    context.on("weberror", lambda error: page.script_errors.append(str(error.error)))
    yield page
    context.close()


@pytest.fixture
def manager(app, domain):
    """Grant the portal's user Domain Management, as an admin does with the command line."""

    def grant():
        result = app.test_cli_runner().invoke(args=["users", "grant", PORTAL_USER, "--domain", domain.name])
        assert result.exit_code == 0, result.output

    return grant


def apiauth_frame(page):
    return page.frame_locator("#apiauth")


def is_csp_violation(text):
    """Tell a console message of our listener, or of Chromium itself, about a refused script or style."""
    return "CSP violation" in text or "Content Security Policy" in text


def add_login_authenticator_in_the_frame(frame, provider, portal):
    """Add an Authorization Code authenticator at the provider through the framed editor."""
    frame.locator(".add-menu").get_by_role("link", name="OAuth 2.0").click()
    form = frame.locator("#authenticator-form")
    form.get_by_label("Name", exact=True).fill("CRM")
    form.get_by_label("Grant type").select_option(label="Authorization Code")
    expect(form.get_by_label("Callback URL")).to_have_value(f"{portal.app_url}/oauth/callback")
    form.get_by_label("Authorization URL").fill(provider.authorization_endpoint)
    form.get_by_label("Access Token URL").fill(provider.token_endpoint)
    form.get_by_label("Client ID").fill("basic-client")
    form.get_by_label("Client secret").fill("basic-secret")
    form.get_by_label("Scope").fill("openid api:read")
    form.get_by_role("button", name="Create").click()
    expect(frame.get_by_role("status")).to_contain_text("CRM")
    frame.get_by_role("link", name="Cancel").click()
    expect(frame.get_by_role("heading", name="API Authenticators")).to_be_visible()


def sign_in_at_provider(window):
    """Fill in oidc-provider's dev login and consent pages."""
    window.locator("input[name=login]").fill("alice")
    window.locator("input[name=password]").fill("any password")
    window.get_by_role("button", name="Sign-in").click()
    window.get_by_role("button", name="Continue").click()


def login_link(frame):
    return frame.get_by_role("row").filter(has_text="CRM").get_by_role("link", name="Login", exact=True)


def stored_authenticator():
    db.session.expire_all()
    return db.session.scalar(db.select(Authenticator).where(Authenticator.name == "CRM"))


def test_the_portal_frames_apiauth_signs_in_by_header_and_logs_in_through_a_popup(
    portal_page, live_portal, provider, manager
):
    page = portal_page
    page.goto(live_portal.page_url)
    frame = apiauth_frame(page)
    expect(frame.get_by_role("heading", name="Not allowed")).to_be_visible()
    portal_user = db.session.scalar(db.select(User).where(User.username == PORTAL_USER))
    assert portal_user.memberships == [] and portal_user.password_hash is None

    manager()
    page.reload()
    expect(frame.get_by_role("heading", name="API Authenticators")).to_be_visible()
    expect(frame.locator(".site-header")).to_have_count(0)
    expect(frame.locator(".add-menu").get_by_role("link", name="OAuth 2.0")).to_have_css("background-color", THEME_ACCENT)

    add_login_authenticator_in_the_frame(frame, provider, live_portal)
    with page.context.expect_page() as popup_info:
        login_link(frame).click()
    popup = popup_info.value
    assert popup.url.startswith(provider.issuer), popup.url
    with popup.expect_event("close"):
        sign_in_at_provider(popup)

    expect(frame.locator(".badge", has_text="Connected")).to_be_visible()
    expect(login_link(frame)).to_have_count(0)
    assert page.url == live_portal.page_url, "the portal page stays where it was"
    assert stored_authenticator().status == "connected"
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert page.csp_violations == []
    assert page.script_errors == []

    # The listener hears what the policy refuses: an inline style added to the framed page.
    framed = next(frame for frame in page.frames if PREFIX in frame.url)
    framed.evaluate("document.body.insertAdjacentHTML('beforeend', '<style>body { color: red; }</style>')")
    page.wait_for_timeout(200)
    assert any("style-src" in violation for violation in page.csp_violations), page.csp_violations


def test_where_popups_are_blocked_the_portal_window_logs_in_and_comes_back_to_the_portal_page(
    portal_page, live_portal, provider, manager
):
    page = portal_page
    page.context.add_init_script("window.open = () => null")
    page.goto(live_portal.page_url)
    frame = apiauth_frame(page)
    expect(frame.get_by_role("heading", name="Not allowed")).to_be_visible()
    manager()
    page.reload()
    add_login_authenticator_in_the_frame(frame, provider, live_portal)

    login_link(frame).click()
    page.wait_for_url(f"{provider.issuer}/**")
    sign_in_at_provider(page)

    page.wait_for_url(live_portal.page_url)
    expect(frame.get_by_role("status")).to_have_text("“CRM” is connected.")
    expect(frame.locator(".badge", has_text="Connected")).to_be_visible()
    assert stored_authenticator().status == "connected"
    assert page.csp_violations == []
    assert page.script_errors == []
