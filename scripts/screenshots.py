#!/usr/bin/env python3
"""Save screenshots of the pane, of an OAuth 2.0 editor and of a Login into docs/screenshots/.

Run from anywhere: .venv/bin/python scripts/screenshots.py [--login-only]
It serves the app on a throwaway database filled with demo authenticators of every method
and status, signs in through the sign-in form in Debian's Chromium, and saves
docs/screenshots/pane.png and docs/screenshots/edit-oauth2.png.

Then it logs in for real, for docs/login-guide.md: it starts the test suite's oidc-provider
(`npm ci --prefix tests/oidc_provider` first), clicks Login in the pane and signs in in the
popup, and saves login-form.png (a new Authorization Code with PKCE authenticator and its
Callback URL), login-need-login.png, login-popup.png and login-connected.png. With
--login-only it saves only these.
"""

import re
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from apiauth import create_app  # noqa: E402
from apiauth.extensions import db  # noqa: E402
from apiauth.models import Domain, Membership, User, utcnow  # noqa: E402
from apiauth.services import create_authenticator  # noqa: E402
from tests.browser.live import chromium, new_page, serve, sign_in  # noqa: E402
from tests.support.oidc import start_oidc_provider  # noqa: E402

SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
TOKEN_URL = "https://auth.example.com/oauth/token"
AUTHORIZE_URL = "https://auth.example.com/oauth/authorize"
EDITED = "Salesforce CRM"
PUBLIC_URL = "https://apiauth.example.com"
LOGIN_NAME = "Helpdesk tickets"
# oidc-provider's dev pages @import a web font from Google: refuse everything beyond this machine.
NOT_LOCAL = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")

# name, author, values, status, reason, hours since the last status update
DEMO = [
    ("Stripe payments", "admin", {"method": "api_key", "description": "Checkout and refunds", "key": "Authorization", "add_to": "header"},
     "succeeded", "", 2),
    ("OpenWeather forecasts", "maria", {"method": "api_key", "key": "appid", "add_to": "query"},
     "failed", "http_401", 5),
    ("Maps geocoding", "admin", {"method": "api_key", "key": "X-API-Key", "add_to": "header"},
     "not_tested", "", None),
    ("Legacy ERP", "maria", {"method": "basic", "username": "erp-sync"}, "failed", "timeout", 30),
    ("Print service", "admin", {"method": "basic", "username": "printer"}, "succeeded", "", 12),
    (EDITED, "admin", {
        "method": "oauth2", "description": "Nightly sync of accounts and contacts into the CRM.", "grant_type": "authorization_code", "access_token_url": TOKEN_URL,
        "auth_url": AUTHORIZE_URL, "client_id": "crm-integration", "scope": "api refresh_token",
        "conditions": [
            {"source": "status_code", "name": "", "operator": "greater_than", "value": "399"},
            {"source": "body", "name": "", "operator": "contains", "value": "invalid_token"},
        ],
    }, "connected", "", 1),
    ("HubSpot contacts", "maria", {
        "method": "oauth2", "grant_type": "authorization_code_pkce", "access_token_url": TOKEN_URL,
        "auth_url": AUTHORIZE_URL, "client_id": "hubspot-app", "client_authentication": "none",
        "scope": "crm.objects.contacts.read",
    }, "need_login", "", None),
    ("Partner gateway", "admin", {
        "method": "oauth2", "grant_type": "client_credentials", "access_token_url": TOKEN_URL,
        "client_id": "partner-gw", "scope": "orders.read",
    }, "failed", "invalid_client", 3),
    ("Shipping rates", "maria", {
        "method": "oauth2", "grant_type": "client_credentials", "access_token_url": TOKEN_URL,
        "client_id": "shipping", "client_authentication": "body",
    }, "succeeded", "", 8),
    ("Old HR system", "admin", {
        "method": "oauth2", "grant_type": "password", "access_token_url": TOKEN_URL,
        "client_id": "hr", "username": "hr-sync",
    }, "not_tested", "", None),
]


def demo_secret_fields(values):
    """Name the secret fields that an authenticator of these values holds."""
    if values["method"] == "api_key":
        return ["value"]
    if values["method"] == "basic":
        return ["password"]
    fields = [] if values.get("client_authentication") == "none" else ["client_secret"]
    return fields + (["password"] if values["grant_type"] == "password" else [])


def seed(password):
    """Create domain Acme, two managers, and the demo authenticators; return the edited one's id."""
    domain = Domain(name="Acme")
    users = {}
    for username in ("admin", "maria"):
        user = User(username=username)
        user.set_password(password)
        user.memberships.append(Membership(domain=domain, domain_manager=True))
        users[username] = user
        db.session.add(user)
    db.session.commit()
    now = utcnow()
    edited_id = None
    for age, (name, author, values, status, reason, hours) in enumerate(DEMO):
        demo_secrets = {field: f"demo-{secrets.token_hex(8)}" for field in demo_secret_fields(values)}
        authenticator = create_authenticator(domain, users[author], {"name": name, **values}, demo_secrets)
        authenticator.modified_at = now - timedelta(days=age, hours=3 * age)
        authenticator.status, authenticator.status_reason = status, reason
        authenticator.status_updated_at = None if hours is None else now - timedelta(hours=hours)
        db.session.commit()
        if name == EDITED:
            edited_id = authenticator.id
    return edited_id


def main():
    """Serve the demo app, sign in, and save the screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "INSTANCE_PATH": str(Path(folder) / "instance"),
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(folder) / 'demo.sqlite3'}",
                # The Callback URL shown in the editor, as behind a real host name.
                "PUBLIC_URL": PUBLIC_URL,
                # The Login screenshots get tokens from an oidc-provider on this machine.
                "OUTBOUND_ALLOW": ["127.0.0.0/8"],
            }
        )
        with app.app_context():
            db.create_all()
            edited_id = seed(password)
            with serve(app) as base_url, chromium() as browser:
                page = sign_in(new_page(browser, base_url), "admin", password)
                shots = {"pane.png": "/authenticators", "edit-oauth2.png": f"/authenticators/{edited_id}/edit"}
                if "--login-only" in sys.argv[1:]:
                    shots = {}
                for filename, path in shots.items():
                    page.goto(path)
                    page.screenshot(path=str(SCREENSHOTS / filename), full_page=True)
                    print(f"Saved {SCREENSHOTS / filename}")
                login_screenshots(app, page, base_url, Path(folder))
                page.context.close()
            db.session.remove()
            db.engine.dispose()


def save(page, filename, clip_to=None, margin=24):
    """Save a screenshot: the whole page, or from its top down to the bottom of clip_to plus a margin."""
    path = SCREENSHOTS / filename
    page.evaluate("document.activeElement && document.activeElement.blur()")
    if clip_to is None:
        page.screenshot(path=str(path), full_page=True)
    else:
        box, size = clip_to.bounding_box(), page.viewport_size
        # With full_page, the clip is in page coordinates, wherever the page is scrolled to.
        scrolled = page.evaluate("window.scrollY")
        height = scrolled + box["y"] + box["height"] + margin
        page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": size["width"], "height": height})
    print(f"Saved {path}")


def fill_login_form(page):
    """Fill in a new Authorization Code with PKCE authenticator, as the guide describes; do not save it."""
    page.goto("/authenticators/new?method=oauth2")
    form = page.locator("#authenticator-form")
    form.get_by_label("Name", exact=True).fill(LOGIN_NAME)
    form.get_by_label("Description").fill("Support tickets for the CRM sync; logged in as the support lead.")
    form.get_by_label("Grant type").select_option(label="Authorization Code with PKCE")
    form.get_by_label("Code challenge method").wait_for()
    form.get_by_label("Access Token URL").fill("https://login.helpdesk.example/oauth2/token")
    form.get_by_label("Authorization URL").fill("https://login.helpdesk.example/oauth2/authorize")
    form.get_by_label("Client ID").fill("apiauth-acme")
    form.get_by_label("Client authentication").select_option("none")
    form.get_by_label("Scope").fill("openid offline_access tickets:read")
    form.locator("details.advanced summary").click()
    form.get_by_role("button", name="Add parameter").click()
    row = form.locator("#extra-param-rows [data-row]").last
    row.get_by_label("Sent with").select_option("authorization")
    row.get_by_label("Parameter").fill("prompt")
    row.get_by_label("Value").fill("consent")
    return form


def login_screenshots(app, page, base_url, folder):
    """Log in for real at an oidc-provider in a popup, saving the login-*.png screenshots."""
    page.context.route(NOT_LOCAL, lambda route: route.abort())
    form = fill_login_form(page)
    save(page, "login-form.png", clip_to=form.locator("fieldset.extra-params"), margin=8)

    # From here the Callback URL is the served app's own, as the provider must reach it.
    app.config["PUBLIC_URL"] = ""
    provider = start_oidc_provider(folder / "oidc-provider.log", redirect_uris=[f"{base_url}/oauth/callback"])
    try:
        admin = db.session.scalar(db.select(User).where(User.username == "admin"))
        authenticator = create_authenticator(admin.memberships[0].domain, admin, {
            "name": LOGIN_NAME, "method": "oauth2", "grant_type": "authorization_code_pkce",
            "description": "Support tickets for the CRM sync.",
            "auth_url": provider.authorization_endpoint, "access_token_url": provider.token_endpoint,
            "client_id": provider.public_client.client_id, "client_authentication": "none",
            "scope": "openid offline_access api:read",
            "extra_params": [{"target": "authorization", "name": "prompt", "value": "consent"}],
        }, {})
        page.goto("/authenticators?q=helpdesk")
        row = page.locator(f"#authenticator-{authenticator.id}")
        row.get_by_text("Need to Login").wait_for()
        save(page, "login-need-login.png", clip_to=page.get_by_role("navigation", name="Pages"))

        with page.expect_popup() as popup_info:
            row.get_by_role("link", name="Login", exact=True).click()
        popup = popup_info.value
        popup.set_viewport_size({"width": 560, "height": 720})
        popup.locator("input[name=login]").wait_for()
        popup.locator("input[name=login]").fill("support-lead@acme.example")
        popup.locator("input[name=password]").fill("a password")
        save(popup, "login-popup.png")
        popup.get_by_role("button", name="Sign-in").click()
        with popup.expect_event("close"):
            popup.get_by_role("button", name="Continue").click()

        row.locator(".badge", has_text="Connected").wait_for()
        save(page, "login-connected.png", clip_to=page.get_by_role("navigation", name="Pages"))
    finally:
        provider.stop()
        app.config["PUBLIC_URL"] = PUBLIC_URL


if __name__ == "__main__":
    main()
