"""Signing in and out, and working in several domains."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
import requests

from apiauth import auth, create_app
from apiauth.extensions import db
from apiauth.models import Domain, SignInFailure
from bench.support import Gunicorn, app_environment, flask_command

from .conftest import CSRF_PATTERN, PASSWORD, sign_in


def test_sign_in_leads_to_the_pane(anonymous, admin):
    response = anonymous.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.headers["Location"] == "/authenticators"
    assert "API Authenticators" in anonymous.get("/authenticators").get_data(as_text=True)


def test_a_wrong_password_is_refused_with_a_clear_message(anonymous, admin):
    response = anonymous.post("/login", data={"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert anonymous.get("/authenticators").status_code == 302


def test_passwords_are_stored_hashed(admin):
    assert PASSWORD not in admin.password_hash
    assert admin.check_password(PASSWORD)


def test_sign_in_returns_to_the_page_asked_for(anonymous, admin):
    response = anonymous.post("/login?next=/authenticators/new?method=basic", data={"username": "alice", "password": PASSWORD})
    assert response.headers["Location"] == "/authenticators/new?method=basic"


def test_sign_in_never_redirects_off_site(anonymous, admin):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        response = anonymous.post(f"/login?next={target}", data={"username": "alice", "password": PASSWORD})
        assert response.headers["Location"] == "/authenticators", target
        anonymous.post("/logout", data={})


def test_sign_in_renews_the_session(anonymous, admin):
    with anonymous.session_transaction() as session:
        session["planted"] = "by an attacker"
    sign_in(anonymous, "alice")
    with anonymous.session_transaction() as session:
        assert "planted" not in session


def test_sign_out_ends_the_session(client):
    response = client.post("/logout", data={})
    assert response.headers["Location"] == "/login"
    assert client.get("/authenticators").status_code == 302


def test_a_user_switches_between_the_domains_they_manage(app, client, admin, make_authenticator, domain):
    second = Domain(name="Beta")
    db.session.add(second)
    db.session.commit()
    admin = db.session.merge(admin)
    from apiauth.models import Membership

    admin.memberships.append(Membership(domain_id=second.id, domain_manager=True))
    db.session.commit()
    make_authenticator("Acme key", secrets={"value": "v"})
    make_authenticator("Beta key", secrets={"value": "v"}, target_domain=second)

    page = client.get("/authenticators").get_data(as_text=True)
    assert "Acme key" in page and "Beta key" not in page

    response = client.post("/domains/switch", data={"domain_id": second.id})
    assert response.status_code == 302
    page = client.get("/authenticators").get_data(as_text=True)
    assert "Beta key" in page and "Acme key" not in page
    assert "You are now working in domain Beta." in page


def test_switching_to_a_domain_without_the_privilege_is_refused(client, domain, make_user):
    other = Domain(name="Gamma")
    db.session.add(other)
    db.session.commit()
    assert client.post("/domains/switch", data={"domain_id": other.id}).status_code == 403


def test_health_check_answers_without_sign_in(anonymous):
    assert anonymous.get("/health").get_json() == {"status": "ok"}


# Sign-in throttling: 5 failures per user name, 20 per client address, in 15 minutes.

USER_NAME_REFUSAL = "Too many failed sign-ins for this user name. Try again in 15 minutes."
ADDRESS_REFUSAL = "Too many failed sign-ins from your network address. Try again in 15 minutes."


@pytest.fixture
def clock(monkeypatch):
    """A clock the sign-in reads, that the test moves on: clock.now += timedelta(...)."""
    fake = SimpleNamespace(now=datetime(2030, 1, 1, 9, 0))
    monkeypatch.setattr("apiauth.auth.clock", lambda: fake.now)
    return fake


def attempt(client, username, password="wrong", address="127.0.0.1", **headers):
    return client.post("/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def fail(client, username, times, **kwargs):
    for _ in range(times):
        assert attempt(client, username, **kwargs).status_code == 401


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_after_five_failures_a_user_name_is_refused_even_with_the_right_password(anonymous, admin, clock, username):
    fail(anonymous, username, 5)
    response = attempt(anonymous, username, PASSWORD)
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert USER_NAME_REFUSAL in page
    assert response.headers["Retry-After"] == "900"
    # What was typed is kept, so the user can try again later without retyping the name.
    assert f'value="{username}"' in page
    assert anonymous.get("/authenticators").status_code == 302


def test_the_refusal_counts_down_and_ends_with_the_window(anonymous, admin, clock):
    fail(anonymous, "alice", 5)
    clock.now += timedelta(minutes=14, seconds=1)
    response = attempt(anonymous, "alice", PASSWORD)
    assert response.status_code == 429
    assert "Try again in 1 minute." in response.get_data(as_text=True)
    clock.now += timedelta(minutes=1)
    assert attempt(anonymous, "alice", PASSWORD).status_code == 302
    assert anonymous.get("/authenticators").status_code == 200


def test_refused_attempts_do_not_extend_the_refusal(anonymous, admin, clock):
    fail(anonymous, "alice", 5)
    for _ in range(10):
        clock.now += timedelta(minutes=1)
        assert attempt(anonymous, "alice").status_code == 429
    clock.now += timedelta(minutes=5, seconds=1)
    assert attempt(anonymous, "alice", PASSWORD).status_code == 302


def test_a_successful_sign_in_clears_the_failures_of_its_user_name(anonymous, admin, clock):
    fail(anonymous, "alice", 4)
    assert attempt(anonymous, "alice", PASSWORD).status_code == 302
    anonymous.post("/logout", data={})
    fail(anonymous, "alice", 4)
    assert attempt(anonymous, "alice", PASSWORD).status_code == 302


def test_the_user_name_limit_ignores_case(anonymous, admin, clock):
    for name in ("alice", "Alice", "ALICE", "aLiCe", "alicE"):
        fail(anonymous, name, 1)
    assert attempt(anonymous, "alice", PASSWORD).status_code == 429


def test_one_address_trying_many_user_names_is_refused_after_twenty_failures(anonymous, admin, clock):
    for number in range(20):
        fail(anonymous, f"guess-{number}", 1, address="192.0.2.7")
    response = attempt(anonymous, "alice", PASSWORD, address="192.0.2.7")
    assert response.status_code == 429
    assert ADDRESS_REFUSAL in response.get_data(as_text=True)
    # The real user, elsewhere, is not locked out.
    assert attempt(anonymous, "alice", PASSWORD, address="198.51.100.4").status_code == 302


def test_a_forged_x_forwarded_for_does_not_change_the_address_counted(anonymous, admin, clock):
    # No trusted proxy is configured: whatever the header says, the client is the peer.
    for number in range(20):
        fail(anonymous, f"guess-{number}", 1, **{"X-Forwarded-For": f"203.0.113.{number}"})
    response = attempt(anonymous, "alice", PASSWORD, **{"X-Forwarded-For": "203.0.113.200"})
    assert response.status_code == 429
    assert ADDRESS_REFUSAL in response.get_data(as_text=True)


def test_every_instance_counts_the_same_failures(app, anonymous, admin, clock):
    other_instance = create_app({**app.config, "INSTANCE_PATH": app.instance_path})
    other_instance.test_client_class = type(anonymous)
    fail(anonymous, "alice", 5)
    response = attempt(other_instance.test_client(), "alice", PASSWORD)
    assert response.status_code == 429
    with other_instance.app_context():
        db.engine.dispose()


def test_concurrent_guesses_across_workers_cannot_slip_past_the_limit(tmp_path, schema_template):
    # Four gunicorn workers check passwords at once: a throttle that counted a failure only
    # after its password check would let every one of these guesses through.
    url = (f"sqlite:///{tmp_path / 'apiauth.sqlite3'}" if schema_template is None
           else schema_template.new_database("template0"))
    environment = app_environment(url)
    flask_command(environment, "db", "upgrade")
    flask_command(environment, "users", "create", "alice")
    server = Gunicorn(environment, tmp_path, workers=4, threads=4)
    try:
        sessions = [requests.Session() for _ in range(12)]
        forms = [{"username": "alice", "password": "wrong",
                  "csrf_token": CSRF_PATTERN.search(s.get(server.url("/login"), timeout=10).text).group(1)}
                 for s in sessions]
        start = threading.Barrier(len(sessions))

        def guess(number):
            start.wait()
            return sessions[number].post(server.url("/login"), data=forms[number], timeout=30).status_code

        with ThreadPoolExecutor(len(sessions)) as pool:
            codes = list(pool.map(guess, range(len(sessions))))
    finally:
        server.stop()
        if schema_template is not None:
            schema_template.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    assert codes.count(401) <= 5 and codes.count(401) + codes.count(429) == len(sessions), codes


def test_failures_are_kept_without_the_user_name_typed(app, anonymous, admin, clock):
    fail(anonymous, "correct horse in the wrong field", 1)
    keys = db.session.scalars(db.select(SignInFailure.user_key)).all()
    assert keys and all("horse" not in key for key in keys)


def test_failures_older_than_the_window_are_pruned(anonymous, admin, clock):
    fail(anonymous, "bob", 3)
    clock.now += timedelta(minutes=16)
    fail(anonymous, "carol", 1)
    assert db.session.scalar(db.select(db.func.count()).select_from(SignInFailure)) == 1


@pytest.mark.parametrize("username", ["nobody", "portal-user"])
def test_an_unknown_user_name_costs_a_password_hash_like_a_known_one(anonymous, admin, make_user, monkeypatch,
                                                                     username):
    """Answering faster for a name no one has (or a user without a password) would tell which names exist."""
    if username == "portal-user":
        make_user(username, {}).password_hash = None
        db.session.commit()
    hashed = []
    real_check = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda *args: hashed.append(1) or real_check(*args))
    response = anonymous.post("/login", data={"username": username, "password": "guess"})
    assert response.status_code == 401 and hashed == [1]
