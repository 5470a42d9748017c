"""A service in another process uses authenticators through apiauth.client, as `auth=` of requests and httpx.

The app runs on a real port; a local third-party API (pytest-httpserver) answers 200 only
to the credentials it expects, and 401 to anything else.
"""

import asyncio
import concurrent.futures
import base64
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest
import requests

from apiauth.client import Apiauth, ApiauthError, IssuedCredentials
from apiauth.extensions import db
from apiauth.service_tokens import create_service_token
from tests.browser.live import serve
from tests.support.consumers import LIBRARIES, bearer_token, call, revoke, token_is_active

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def base_url(app):
    with serve(app) as url:
        yield url


@pytest.fixture
def service_token(domain):
    return create_service_token(domain, "billing-service", "use")[1]


@pytest.fixture
def apiauth_calls():
    """The paths of the calls that the consumer makes to apiauth."""
    return []


@pytest.fixture
def apiauth_client(base_url, service_token, apiauth_calls):
    session = requests.Session()
    session.hooks["response"].append(lambda response, **_: apiauth_calls.append(response.request.path_url))
    with Apiauth(base_url, service_token, session=session) as client:
        yield client


def calls_to(endpoint, calls):
    """Count the calls to one endpoint of an authenticator: "credentials" or "report"."""
    return sum(path.endswith("/" + endpoint) for path in calls)


@pytest.mark.parametrize("library", LIBRARIES)
def test_api_key_header_is_added(library, apiauth_client, api_key_header, third_party):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-123")
    assert call(library, "GET", url, apiauth_client.auth("Reports"))[:2] == (200, {"query": {}, "body": ""})


@pytest.mark.parametrize("library", LIBRARIES)
def test_api_key_query_parameter_replaces_one_of_the_same_name(library, apiauth_client, api_key_query, third_party):
    url = third_party.accept(lambda request: request.args.getlist("api_key") == ["key-456"])
    status, body, _ = call(library, "GET", url + "?api_key=stale&page=2", apiauth_client.auth("maps"))
    assert status == 200
    assert body["query"] == {"page": ["2"], "api_key": ["key-456"]}


@pytest.mark.parametrize("library", LIBRARIES)
def test_basic_credentials_are_added(library, apiauth_client, basic, third_party):
    expected = "Basic " + base64.b64encode("ledger-user:pa:ss wörd".encode()).decode()
    url = third_party.accept(lambda request: request.headers.get("Authorization") == expected)
    assert call(library, "GET", url, apiauth_client.auth(basic.id))[0] == 200


@pytest.mark.oidc
@pytest.mark.parametrize("library", LIBRARIES)
def test_oauth_token_from_the_authorization_server_is_accepted(library, apiauth_client, oauth, oidc_provider, third_party):
    url = third_party.accept(lambda request: token_is_active(oidc_provider, bearer_token(request)))
    assert call(library, "POST", url, apiauth_client.auth("Payments"), b'{"amount": 5}')[:2] == (
        200, {"query": {}, "body": '{"amount": 5}'}
    )


@pytest.mark.parametrize("library", LIBRARIES)
def test_credentials_are_fetched_once_while_they_are_fresh(library, apiauth_client, apiauth_calls, api_key_header, third_party):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-123")
    auth = apiauth_client.auth("Reports")
    assert [call(library, "GET", url, auth)[0] for _ in range(3)] == [200, 200, 200]
    assert calls_to("credentials", apiauth_calls) == 1
    assert apiauth_client.auth("Reports") is auth


def test_threads_share_one_credentials_request(apiauth_client, apiauth_calls, api_key_header, third_party):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-123")
    auth, statuses, barrier = apiauth_client.auth("Reports"), [], threading.Barrier(8)

    def consume():
        barrier.wait()
        statuses.append(call("requests", "GET", url, auth)[0])

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 8
    assert calls_to("credentials", apiauth_calls) == 1


@pytest.mark.oidc
@pytest.mark.parametrize("library", LIBRARIES)
def test_a_rejected_token_is_reported_renewed_and_the_request_sent_once_more(
    library, apiauth_client, apiauth_calls, oauth, oidc_provider, third_party
):
    url = third_party.accept(lambda request: token_is_active(oidc_provider, bearer_token(request)))
    auth = apiauth_client.auth("Payments")
    assert call(library, "GET", url, auth)[0] == 200
    first_token = bearer_token(third_party.seen[-1])
    revoke(oidc_provider, first_token)

    status, body, earlier = call(library, "PUT", url, auth, b"payload")

    assert (status, body["body"], earlier) == (200, "payload", [401])
    rejected, retried = third_party.seen[-2:]
    assert bearer_token(rejected) == first_token
    assert bearer_token(retried) not in ("", first_token)
    assert calls_to("report", apiauth_calls) == 1
    assert calls_to("credentials", apiauth_calls) == 2


@pytest.mark.oidc
def test_requests_does_not_resend_a_body_read_from_a_generator(apiauth_client, apiauth_calls, oauth, third_party):
    url = third_party.accept(lambda request: False)
    body = (part for part in [b"read ", b"once"])
    response = requests.post(url, data=body, auth=apiauth_client.auth("Payments"), timeout=10)
    assert (response.status_code, response.history) == (401, [])
    assert [request.get_data() for request in third_party.seen] == [b"read once"]
    assert calls_to("report", apiauth_calls) == 1


@pytest.mark.oidc
@pytest.mark.parametrize("library", LIBRARIES)
def test_a_second_rejection_is_returned_and_reported_without_more_tries(
    library, apiauth_client, apiauth_calls, oauth, third_party
):
    url = third_party.accept(lambda request: False)
    status, _, earlier = call(library, "GET", url, apiauth_client.auth("Payments"))
    assert (status, earlier) == (401, [401])
    assert len(third_party.seen) == 2
    assert calls_to("report", apiauth_calls) == 2
    listed = {entry["name"]: entry for entry in apiauth_client.authenticators()}
    assert (listed["Payments"]["status"], listed["Payments"]["status_reason"]) == ("failed", "http_401")


@pytest.mark.parametrize("library", LIBRARIES)
def test_rejected_static_credentials_are_reported_and_fetched_again_next_time(
    library, apiauth_client, apiauth_calls, api_key_header, third_party
):
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "rotated-key")
    auth = apiauth_client.auth("Reports")
    # The same key again would be rejected again: no second try.
    status, _, earlier = call(library, "GET", url, auth)
    assert (status, earlier) == (401, [])
    assert len(third_party.seen) == 1 and calls_to("report", apiauth_calls) == 1

    api_key_header.set_secret("value", "rotated-key")
    db.session.commit()
    assert call(library, "GET", url, auth)[0] == 200
    assert calls_to("credentials", apiauth_calls) == 2


@pytest.mark.oidc
@pytest.mark.parametrize("library", LIBRARIES)
def test_an_authenticator_nobody_logged_in_to_raises_need_login(library, apiauth_client, not_connected, third_party):
    url = third_party.accept(lambda request: True)
    with pytest.raises(ApiauthError) as raised:
        call(library, "GET", url, apiauth_client.auth("Mailbox"))
    assert (raised.value.code, raised.value.status) == ("need_login", 409)
    assert third_party.seen == []


def test_a_wrong_service_token_raises_unauthorized(base_url, api_key_header, third_party):
    url = third_party.accept(lambda request: True)
    with Apiauth(base_url, "apiauth_not-a-token") as client, pytest.raises(ApiauthError) as raised:
        call("requests", "GET", url, client.auth(api_key_header.id))
    assert (raised.value.code, raised.value.status) == ("unauthorized", 401)


def test_an_unknown_name_raises_not_found(apiauth_client, third_party):
    url = third_party.accept(lambda request: True)
    with pytest.raises(ApiauthError) as raised:
        call("httpx", "GET", url, apiauth_client.auth("No such thing"))
    assert raised.value.code == "not_found"


@pytest.mark.oidc
def test_an_async_httpx_client_gets_the_same_retry(apiauth_client, apiauth_calls, oauth, oidc_provider, third_party):
    url = third_party.accept(lambda request: token_is_active(oidc_provider, bearer_token(request)))
    auth = apiauth_client.auth("Payments")

    async def consume():
        async with httpx.AsyncClient(timeout=10) as client:
            first = await client.get(url, auth=auth)
            revoke(oidc_provider, bearer_token(third_party.seen[-1]))
            second = await client.post(url, auth=auth, content=b"again")
        return first.status_code, second.status_code, second.json()["body"], [r.status_code for r in second.history]

    # A thread of its own: the browser tests' Playwright keeps an event loop in the main thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        outcome = pool.submit(lambda: asyncio.run(consume())).result()
    assert outcome == (200, 200, "again", [401])
    assert calls_to("report", apiauth_calls) == 1


def test_relay_sends_the_call_to_an_allowed_host(apiauth_client, make_authenticator, third_party):
    make_authenticator("Relayed", key="X-API-Key", secrets={"value": "key-789"}, allowed_hosts=["localhost"])
    url = third_party.accept(lambda request: request.headers.get("X-API-Key") == "key-789")
    answer = apiauth_client.relay("Relayed", "POST", url + "?page=1", {"Content-Type": "text/plain"}, "hello")
    assert answer["status_code"] == 200
    assert json.loads(answer["body"]) == {"query": {"page": ["1"]}, "body": "hello"}
    with pytest.raises(ApiauthError) as raised:
        apiauth_client.relay("Relayed", "GET", "https://example.com/data")
    assert raised.value.code == "host_not_allowed"


@pytest.mark.parametrize(
    ("missing", "libraries"), [(("flask",), ("requests", "httpx")), (("flask", "httpx"), ("requests",))]
)
def test_the_client_works_without_flask_or_httpx(missing, libraries, base_url, service_token, api_key_query, third_party):
    url = third_party.accept(lambda request: request.args.get("api_key") == "key-456")
    script = textwrap.dedent(
        f"""
        import sys

        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0].split("_")[0] in {missing!r}:
                    raise ImportError(f"{{name}} is not installed here")

        sys.meta_path.insert(0, Missing())
        from apiauth.client import Apiauth

        with Apiauth({base_url!r}, {service_token!r}) as apiauth_client:
            auth = apiauth_client.auth("Maps")
            for library in {libraries!r}:
                print(__import__(library).get({url!r}, auth=auth, timeout=10).status_code)
        print(sorted(name for name in sys.modules if name.split(".")[0].split("_")[0] in {missing!r}))
        """
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=PROJECT_ROOT
    )
    assert finished.stderr == ""
    assert finished.stdout.splitlines() == ["200"] * len(libraries) + ["[]"]


def test_credentials_are_kept_until_a_margin_before_they_expire():
    def fresh_for(expires_at):
        answer = {"headers": {}, "query": {}, "expires_at": expires_at, "generation": 1 if expires_at else None}
        return IssuedCredentials.from_answer(answer, now=1_000_000.0).fresh_until - 1_000_000.0

    assert fresh_for(1_000_000.0 + 3600) == 3570  # 30 s before an hour's token expires
    assert fresh_for(1_000_000.0 + 60) == 54  # a tenth of a short one's time
    assert fresh_for(1_000_000.0 - 5) == -5  # already expired: fetched again at the next use
    assert fresh_for(None) == 300  # credentials without expiry are fetched again after 5 minutes
