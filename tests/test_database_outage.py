"""The database out of reach: 503 with a clear page or JSON error, nothing half-written, recovery by itself.

The unit tests take the test's database away under a running app (SQLite: the file gives
way to a folder; PostgreSQL: the database is dropped). The gunicorn test restarts a real
PostgreSQL under a load of pane and API requests and checks that the same gunicorn serves
again afterwards, and that every create and edit in flight is either whole or absent.
"""

import os
import shutil
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import create_engine, text

from apiauth import create_app
from apiauth.extensions import db
from apiauth.models import Authenticator
from apiauth.service_tokens import create_service_token
from bench.support import Gunicorn, app_environment, flask_command, prepare_database
from tests.support.postgres import PostgresServer, wanted

from .conftest import CSRF_PATTERN

PAGE_TITLE = "Temporarily unavailable"
PAGE_MESSAGE = "The database cannot be reached right now. Nothing was saved."


def take_database_away(database_url, schema_template):
    """Make the test's database unreachable: drop it (PostgreSQL), or put a folder where its file was (SQLite)."""
    db.session.remove()
    if schema_template is not None:
        schema_template.execute(f'DROP DATABASE "{database_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        return
    path = database_url.removeprefix("sqlite:///")
    shutil.move(path, path + ".away")
    db.engine.dispose()
    # SQLite would create an empty file where none is; it cannot open a folder.
    os.mkdir(path)


@pytest.fixture
def use_token(app, domain, make_authenticator):
    """A `use` service token of the test domain and an API Key authenticator: (token, authenticator id)."""
    authenticator = make_authenticator("Reports", secrets={"value": "outage-canary-31f"})
    _, plain = create_service_token(domain, "reports", "use", [], created_by="test")
    return plain, authenticator.id


def assert_clear_page(response):
    """A 503 whose page says what happened and what to do, without a trace of the code."""
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert PAGE_TITLE in page and PAGE_MESSAGE in page
    assert "Traceback" not in page and "sqlalchemy" not in page.lower()


def test_pages_answer_a_clear_503_while_the_database_is_out_of_reach(
    app, client, database_url, schema_template, use_token, caplog
):
    csrf_token = client.csrf_token()
    authenticator_id = use_token[1]
    take_database_away(database_url, schema_template)
    for response in (
        client.get("/authenticators"),
        client.get("/authenticators", headers={"HX-Request": "true"}),
        client.post(f"/authenticators/{authenticator_id}/delete", data={"csrf_token": csrf_token}),
    ):
        assert_clear_page(response)
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json() == {"status": "database_unavailable"}
    warnings = [record.getMessage() for record in caplog.records if "Database unavailable" in record.getMessage()]
    assert warnings and all("\n" not in line and "outage-canary" not in line for line in warnings)
    assert not [record for record in caplog.records if record.exc_info]


def test_the_api_answers_503_json_while_the_database_is_out_of_reach(
    app, client, database_url, schema_template, use_token
):
    token, authenticator_id = use_token
    take_database_away(database_url, schema_template)
    response = client.post(f"/api/v1/authenticators/{authenticator_id}/credentials",
                           headers={"Authorization": f"Bearer {token}"}, json={})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {"error": "database_unavailable", "message": (
        "The database cannot be reached right now. Nothing was saved. Try again in a moment.")}


@pytest.mark.skipif(not wanted(), reason="cuts a server connection: PostgreSQL only (APIAUTH_TEST_DATABASE=postgresql)")
def test_a_connection_cut_after_the_answer_was_made_leaves_the_answer_alone(app, schema_template):
    @app.route("/probe")
    def probe():
        backend = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        # As a database restart would: the session's connection dies before the request ends.
        schema_template.execute(f"SELECT pg_terminate_backend({backend}, 5000)")
        return "answered"

    response = app.test_client().get("/probe")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "answered")


def test_a_database_error_that_is_no_outage_stays_a_500(app, client, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    def broken(*args, **kwargs):
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

    monkeypatch.setattr("apiauth.pane.views.render_template", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise into the test
    response = client.get("/authenticators")
    assert response.status_code == 500
    assert "Something went wrong" in response.get_data(as_text=True)


# The same, for real: gunicorn on a PostgreSQL that stops and starts again under load.

WORKERS, THREADS = 2, 4
OUTAGE_SECONDS = 1.5
CHECK_REQUESTS = 12
ADMIN, ADMIN_PASSWORD = "outage-admin", "outage password 8c1"
OK = {"pane": 200, "credentials": 200, "create": 201, "edit": 200}


@dataclass
class Answer:
    kind: str
    status: int
    body: str
    started: float
    ended: float


class Site:
    """What the load sends: pane pages as a signed-in admin, credentials calls, creates and edits."""

    def __init__(self, server, tokens):
        self.server, self.tokens = server, tokens
        self.browser = requests.Session()
        page = self.browser.get(server.url("/login"), timeout=10).text
        match = CSRF_PATTERN.search(page)
        signed_in = self.browser.post(server.url("/login"), timeout=10, allow_redirects=False, data={
            "username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": match.group(1) or match.group(2)})
        assert signed_in.status_code == 302, signed_in.text
        self.reused = self.api("POST", "/authenticators", self.tokens.manage, json=self.fields("Reused")).json()
        self.edited = self.api("POST", "/authenticators", self.tokens.manage, json=self.fields("Edited")).json()
        self.version = self.edited["version"]
        self.created, self.edits = [], []
        self.counter = iter(range(1, 10**6))

    @staticmethod
    def fields(name):
        return {"method": "api_key", "name": name, "key": "X-API-Key", "value": f"secret of {name}"}

    def api(self, method, path, token, **kwargs):
        return requests.request(method, self.server.url("/api/v1" + path), timeout=10,
                                headers={"Authorization": f"Bearer {token}"}, **kwargs)

    def pane(self):
        return self.browser.get(self.server.url("/authenticators"), timeout=10)

    def credentials(self):
        return self.api("POST", f"/authenticators/{self.reused['id']}/credentials", self.tokens.use, json={})

    def create(self):
        name = f"Created {next(self.counter)}"
        self.created.append(name)
        return self.api("POST", "/authenticators", self.tokens.manage, json=self.fields(name))

    def edit(self):
        number = next(self.counter)
        response = self.api("PATCH", f"/authenticators/{self.edited['id']}", self.tokens.manage,
                            json={"version": self.version, "description": f"edit {number}"})
        if response.status_code in (200, 409):
            self.version = response.json()["version"]
        if response.status_code == 200:
            self.edits.append(number)
        return response


class Load:
    """Threads sending one kind of request each, in a loop, until stopped; every answer recorded."""

    def __init__(self, site, kinds):
        self.site, self.answers = site, []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True) for kind in kinds]
        for thread in self.threads:
            thread.start()

    def _loop(self, kind):
        while not self.stopping.is_set():
            self.answers.append(send(self.site, kind))
            time.sleep(0.02)

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)

    def succeeded_since(self, moment):
        """The kinds of request answered with success, each started after moment."""
        return {a.kind for a in self.answers if a.started > moment and a.status == OK[a.kind]}


def send(site, kind):
    """Send one request of a kind; record what came back."""
    started = time.monotonic()
    try:
        response = getattr(site, kind)()
        status, body = response.status_code, response.text
    except requests.RequestException as error:
        status, body = 0, repr(error)
    return Answer(kind, status, body, started, time.monotonic())


def wait_for(condition, seconds=15):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def assert_unavailable(answer):
    """An answer during the outage: 503 with the clear page, or the JSON error under /api/v1."""
    assert answer.status == 503, answer
    assert "Traceback" not in answer.body
    if answer.kind == "pane":
        assert PAGE_TITLE in answer.body and PAGE_MESSAGE in answer.body
    else:
        assert '"error":"database_unavailable"' in answer.body.replace(" ", ""), answer


@pytest.fixture
def restartable_postgres():
    """A PostgreSQL server of this test's own, which it may stop and start."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.mark.skipif(not wanted(), reason="a database server restart: PostgreSQL only (APIAUTH_TEST_DATABASE=postgresql)")
def test_a_postgresql_restart_under_load_answers_503_then_recovers_without_a_restart(restartable_postgres, tmp_path):
    environment = app_environment(restartable_postgres.url())
    tokens = prepare_database(environment)
    flask_command(environment, "users", "create", ADMIN, "--domain", "Bench", "--domain-manager", "--password-stdin",
                  input=ADMIN_PASSWORD + "\n")
    with Gunicorn(environment, tmp_path, workers=WORKERS, threads=THREADS) as server:
        workers = server.worker_pids()
        site = Site(server, tokens)
        load = Load(site, ["pane", "pane", "credentials", "credentials", "create", "edit"])
        try:
            wait_for(lambda: load.succeeded_since(0) == set(OK))
            restartable_postgres.shut_down()
            down = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            up = time.monotonic()
            restartable_postgres.start()
            back = time.monotonic()
            wait_for(lambda: load.succeeded_since(back) == set(OK))
        finally:
            load.stop()
        during = [answer for answer in load.answers if answer.started > down and answer.ended < up]
        for answer in during:
            assert_unavailable(answer)
        assert {answer.kind for answer in during} == set(OK)
        for answer in load.answers:
            assert answer.status in (OK[answer.kind], 503, 409 if answer.kind == "edit" else 503), answer
            assert "Traceback" not in answer.body

        # The same gunicorn serves again; a restart while idle costs no request either.
        assert_every_request_succeeds(site)
        restartable_postgres.shut_down()
        restartable_postgres.start()
        assert_every_request_succeeds(site)
        assert server.worker_pids() == workers
        log = server.log()
    assert "Traceback" not in log and "Database unavailable" in log
    assert_nothing_half_written(environment, site, load)


def assert_every_request_succeeds(site):
    for _ in range(CHECK_REQUESTS):
        for kind in OK:
            answer = send(site, kind)
            assert answer.status == OK[kind], answer


def assert_nothing_half_written(environment, site, load):
    """Each create is whole (row, secret, audit event) or absent; each edit counted in the version."""
    engine = create_engine(environment["APIAUTH_DATABASE_URL"])
    with engine.connect() as connection:
        created = dict(connection.execute(text(
            "SELECT name, id FROM authenticators WHERE name LIKE 'Created %'")).all())
        events = defaultdict(list)
        for authenticator_id, action in connection.execute(text(
                "SELECT authenticator_id, action FROM audit_events")):
            events[authenticator_id].append(action)
        edited = connection.execute(text(
            "SELECT version, description FROM authenticators WHERE id = :id"), {"id": site.edited["id"]}).one()
    engine.dispose()
    answered_created = {name for name in site.created
                        if any(f'"{name}"' in answer.body for answer in load.answers if answer.status == 201)}
    assert answered_created <= set(created) <= set(site.created)
    assert all(events[authenticator_id] == ["created"] for authenticator_id in created.values())
    assert edited.version == 1 + events[site.edited["id"]].count("updated")
    assert int(edited.description.split()[1]) >= max(site.edits)
    app = create_app({"SQLALCHEMY_DATABASE_URI": environment["APIAUTH_DATABASE_URL"],
                      "ENCRYPTION_KEYS": [environment["APIAUTH_ENCRYPTION_KEYS"]], "SECRET_KEY": "x"})
    with app.app_context():
        for name, authenticator_id in created.items():
            assert db.session.get(Authenticator, authenticator_id).get_secret("value") == f"secret of {name}"
        db.session.remove()
        db.engine.dispose()
