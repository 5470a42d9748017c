"""Fixtures shared by the whole suite: a fresh app and database per test, users, clients."""

import re

import pytest
from flask.testing import FlaskClient

from apiauth import create_app
from apiauth.extensions import db
from apiauth.models import Authenticator, Domain, Membership, User


pytest_plugins = [
    "tests.support.oidc",
    "tests.support.password_server",
    "tests.support.postgres",
    "tests.support.consumers",
]

# The callback the Flask test client's app builds (its requests go to http://localhost/).
TEST_CLIENT_CALLBACK = "http://localhost/oauth/callback"
TEST_KEY = "q3p9b5gU7m1kXo2nX9r0Vf3S8yJt6wLhZc4eDa1bQ0E="
PASSWORD = "correct horse battery staple"
CSRF_PATTERN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


class CsrfClient(FlaskClient):
    """A test client that sends the CSRF token with every POST, as a browser form would.

    Each request runs in an app context of its own, as in production, even while the test
    holds one: `g` and the database session do not leak between requests.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)

    def post(self, *args, csrf=True, **kwargs):
        data = kwargs.get("data")
        if csrf and isinstance(data, dict) and "csrf_token" not in data:
            kwargs["data"] = {**data, "csrf_token": self.csrf_token()}
        return super().post(*args, **kwargs)

    def csrf_token(self):
        """Read the CSRF token from a page, as the browser would have it."""
        page = self.get("/login").get_data(as_text=True)
        match = CSRF_PATTERN.search(page)
        return match.group(1) or match.group(2)


@pytest.fixture(scope="session")
def schema_template(request, postgres_wanted):
    """On PostgreSQL: the server, its template database holding the schema (None on SQLite)."""
    if not postgres_wanted:
        return None
    server = request.getfixturevalue("postgres_server")
    template_app = create_app({"SQLALCHEMY_DATABASE_URI": server.template_url, "SECRET_KEY": "x",
                               "ENCRYPTION_KEYS": [TEST_KEY]})
    with template_app.app_context():
        db.create_all()
        db.engine.dispose()
    return server


def _database(tmp_path, schema_template, name, empty=False):
    """Yield the URL of a new database for one test, dropped afterwards on PostgreSQL."""
    if schema_template is None:
        yield f"sqlite:///{tmp_path / name}.sqlite3"
        return
    url = schema_template.new_database("template0" if empty else schema_template.template_name)
    yield url
    schema_template.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def database_url(tmp_path, schema_template):
    """A fresh database with the schema (made by the app fixture on SQLite): SQLite, or PostgreSQL when asked for."""
    yield from _database(tmp_path, schema_template, "test")


@pytest.fixture
def empty_database_url(tmp_path, schema_template):
    """A database without any table, on the database of this test session."""
    yield from _database(tmp_path, schema_template, "empty", empty=True)


@pytest.fixture
def app_settings():
    """Settings a test module adds to the test app's: override this fixture, or parametrize it."""
    return {}


@pytest.fixture
def app(tmp_path, database_url, app_settings):
    """An app on a fresh database in a temporary instance folder."""
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "ENCRYPTION_KEYS": [TEST_KEY],
            "OUTBOUND_ALLOW": ["127.0.0.0/8", "::1/128"],
            **app_settings,
        }
    )
    app.test_client_class = CsrfClient
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def domain(app):
    """The domain most tests work in."""
    domain = Domain(name="Acme")
    db.session.add(domain)
    db.session.commit()
    return domain


@pytest.fixture
def make_user(app):
    """Create users with memberships: make_user('bob', {domain: True})."""

    def make(username, memberships=None, password=PASSWORD):
        user = User(username=username)
        user.set_password(password)
        for member_domain, manager in (memberships or {}).items():
            user.memberships.append(Membership(domain_id=member_domain.id, domain_manager=manager))
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def admin(make_user, domain):
    """A user with Domain Management in the test domain."""
    return make_user("alice", {domain: True})


def sign_in(client, username, password=PASSWORD):
    """Sign a client in through the sign-in form."""
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def client(app, admin):
    """A test client signed in as the domain manager."""
    return sign_in(app.test_client(), admin.username)


@pytest.fixture
def anonymous(app):
    """A test client nobody signed in to."""
    return app.test_client()


@pytest.fixture
def make_authenticator(app, domain, admin):
    """Create an authenticator directly, with secrets: make_authenticator('Name', method=..., secrets={...})."""

    def make(name, method="api_key", secrets=None, target_domain=None, **fields):
        defaults = {"api_key": {"key": "X-API-Key"}, "basic": {"username": "user"}}.get(method, {})
        authenticator = Authenticator(
            domain_id=(target_domain or domain).id,
            name=name,
            name_key=name.casefold(),
            method=method,
            modified_by_id=admin.id,
            modified_by_name=admin.username,
            **{**defaults, **fields},
        )
        for field, value in (secrets or {}).items():
            authenticator.set_secret(field, value)
        db.session.add(authenticator)
        db.session.commit()
        return authenticator

    return make


@pytest.fixture(scope="session")
def oidc_redirect_uris():
    """Register the test client's callback at the oidc-provider test server."""
    return ["http://127.0.0.1:5000/oauth/callback", TEST_CLIENT_CALLBACK]
