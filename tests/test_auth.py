"""Signing in and out, and working in several domains."""

from apiauth.extensions import db
from apiauth.models import Domain

from .conftest import PASSWORD, sign_in


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
