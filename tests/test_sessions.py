"""Server-side sessions: sign-out ends the session for every copy of its cookie."""

from datetime import timedelta

from apiauth.extensions import db
from apiauth.models import UserSession, utcnow

from .conftest import sign_in


def copy_of(client, app):
    """A second browser holding a copy of the client's session cookie, as a thief would."""
    thief = app.test_client()
    name = app.config["SESSION_COOKIE_NAME"]
    thief.set_cookie(name, client.get_cookie(name).value)
    return thief


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app, client):
    thief = copy_of(client, app)
    assert thief.get("/authenticators").status_code == 200
    client.post("/logout", data={})
    response = thief.get("/authenticators")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    htmx = thief.get("/authenticators", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")


def test_signing_out_ends_only_that_session(app, client, admin):
    laptop = sign_in(app.test_client(), admin.username)
    client.post("/logout", data={})
    assert laptop.get("/authenticators").status_code == 200


def test_a_session_ends_when_it_outlives_its_hours(app, client, monkeypatch):
    later = utcnow() + timedelta(hours=app.config["SESSION_HOURS"], seconds=1)
    monkeypatch.setattr("apiauth.auth.clock", lambda: later)
    assert client.get("/authenticators").status_code == 302


def test_signing_in_removes_sessions_past_their_hours(app, admin, monkeypatch):
    sign_in(app.test_client(), admin.username)
    later = utcnow() + timedelta(hours=app.config["SESSION_HOURS"], seconds=1)
    monkeypatch.setattr("apiauth.auth.clock", lambda: later)
    sign_in(app.test_client(), admin.username)
    assert db.session.scalar(db.select(db.func.count()).select_from(UserSession)) == 1


def test_the_database_keeps_only_a_digest_of_the_session_value(app, client):
    with client.session_transaction() as session:
        value = session["session_key"]
    stored = db.session.scalars(db.select(UserSession.id)).all()
    assert len(stored) == 1 and value not in stored[0]
