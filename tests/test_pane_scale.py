"""The pane costs the same number of SQL statements however full the domain; demo seed fills one."""

import pytest
from sqlalchemy import event, func, select

from apiauth.extensions import db
from apiauth.models import METHODS, Authenticator, Domain

from .conftest import sign_in

SORTS = ("name", "method", "modified_at", "modified_by", "status", "status_updated_at")
PAGE = 20  # the pane's page size
# (URL, rows shown with 3 authenticators, rows shown with 300).
VIEWS = [
    ("/authenticators", 3, PAGE),
    *((f"/authenticators?sort={sort}&dir={direction}", 3, PAGE) for sort in SORTS for direction in ("asc", "desc")),
    # Seeded names carry their method: one in four is Basic Auth.
    ("/authenticators?q=BASIC", 1, PAGE),
]
SECRET_FIELD = {"api_key": "value", "basic": "password", "oauth2": "client_secret"}
ROW_MARK = '<tr id="authenticator-'


def seed(app, domain_name, count):
    """Run `flask demo seed` as an admin would."""
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--count", str(count), "--domain", domain_name])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def seeded_client(app, make_user):
    """Sign in the manager of a new domain that holds `count` seeded authenticators."""

    def make(count):
        domain = Domain(name=f"Seeded with {count}")
        db.session.add(domain)
        db.session.commit()
        manager = make_user(f"manager-of-{count}", {domain: True})
        seed(app, domain.name, count)
        return sign_in(app.test_client(), manager.username)

    return make


@pytest.fixture
def sql_log(app):
    """The SQL statements the app sends, recorded as they go to the database."""
    statements = []

    def record(connection, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield statements
    event.remove(db.engine, "before_cursor_execute", record)


def pane_requests(client, sql_log):
    """GET every pane view; return, per URL, the rows it shows and the SQL statements it took."""
    rows, statements = {}, {}
    for url, _, _ in VIEWS:
        sql_log.clear()
        response = client.get(url)
        assert response.status_code == 200, url
        rows[url] = response.get_data(as_text=True).count(ROW_MARK)
        statements[url] = len(sql_log)
    return rows, statements


def test_every_pane_view_takes_as_many_sql_statements_for_300_authenticators_as_for_3(seeded_client, sql_log):
    small, large = seeded_client(3), seeded_client(300)

    small_rows, small_statements = pane_requests(small, sql_log)
    large_rows, large_statements = pane_requests(large, sql_log)

    assert small_rows == {url: rows for url, rows, _ in VIEWS}
    assert large_rows == {url: rows for url, _, rows in VIEWS}
    assert large_statements == small_statements


def test_demo_seed_fills_the_named_domain_with_mixed_authenticators_whose_secrets_decrypt(app, domain):
    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()

    result = seed(app, domain.name, 40)

    assert "Added 40 authenticators to domain Acme." in result.output
    seeded = db.session.scalars(select(Authenticator).where(Authenticator.domain_id == domain.id)).all()
    assert len(seeded) == 40
    assert {authenticator.method for authenticator in seeded} == set(METHODS)
    assert len({authenticator.status for authenticator in seeded}) >= 4
    for authenticator in seeded:
        assert authenticator.get_secret(SECRET_FIELD[authenticator.method]).startswith("demo-")
    assert db.session.scalar(select(func.count()).where(Authenticator.domain_id == other.id)) == 0


def test_demo_seed_refuses_a_domain_that_does_not_exist(app):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--count", "5", "--domain", "Nowhere"])

    assert result.exit_code != 0
    assert "No domain named 'Nowhere'." in result.output
    assert db.session.scalar(select(func.count()).select_from(Authenticator)) == 0


def test_demo_seed_statuses_fit_each_authenticator(app, domain):
    seed(app, domain.name, 40)

    seeded = db.session.scalars(select(Authenticator).where(Authenticator.domain_id == domain.id)).all()
    for authenticator in seeded:
        assert (authenticator.status in ("need_login", "connected")) == authenticator.uses_login, authenticator.name
        if authenticator.status == "failed":
            assert authenticator.status_reason, authenticator.name
    oauth_grants = {a.grant_type for a in seeded if a.method == "oauth2"}
    assert oauth_grants == {"client_credentials", "authorization_code", "authorization_code_pkce", "password"}
