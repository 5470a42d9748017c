#!/usr/bin/env python3
"""Save screenshots of the pane and of an OAuth 2.0 editor into docs/screenshots/.

Run from anywhere: .venv/bin/python scripts/screenshots.py
It serves the app on a throwaway database filled with demo authenticators of every method
and status, signs in through the sign-in form in Debian's Chromium, and saves
docs/screenshots/pane.png and docs/screenshots/edit-oauth2.png.
"""

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

SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
TOKEN_URL = "https://auth.example.com/oauth/token"
AUTHORIZE_URL = "https://auth.example.com/oauth/authorize"
EDITED = "Salesforce CRM"

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
                "PUBLIC_URL": "https://apiauth.example.com",
            }
        )
        with app.app_context():
            db.create_all()
            edited_id = seed(password)
            with serve(app) as base_url, chromium() as browser:
                page = sign_in(new_page(browser, base_url), "admin", password)
                shots = {"pane.png": "/authenticators", "edit-oauth2.png": f"/authenticators/{edited_id}/edit"}
                for filename, path in shots.items():
                    page.goto(path)
                    page.screenshot(path=str(SCREENSHOTS / filename), full_page=True)
                    print(f"Saved {SCREENSHOTS / filename}")
                page.context.close()
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
