"""Use apiauth's authenticators from another process: credentials over HTTP, cached, as `auth=`.

    from apiauth.client import Apiauth

    apiauth_client = Apiauth("https://apiauth.example.com", service_token)
    requests.get(url, auth=apiauth_client.auth("Billing API"))
    httpx.get(url, auth=apiauth_client.auth("Billing API"))

This module loads no Flask: it needs `requests` (an apiauth dependency) and, for `httpx`
clients, `httpx`. The auth objects and their cache also serve `apiauth.use` in the app's
own process, with another source of credentials.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field

import requests
from requests.utils import rewind_body

from .engine.apply import with_query_parameter

try:
    import anyio.to_thread
    import httpx
except ImportError:  # httpx is optional: without it the auth objects serve requests only.
    httpx = None

# As apiauth.api.URL_PREFIX, which this module cannot import: that package loads Flask.
API_PREFIX = "/api/v1"
# Credentials are used until this long before they expire, or a tenth of their remaining time if less.
MARGIN = 30.0
# Credentials that do not expire (API keys, Basic) are fetched again after this long, to pick up changes.
MAX_AGE = 300.0
TIMEOUT = 10.0
# The status with which an API says "these credentials are not good".
REJECTED = 401


class ApiauthError(Exception):
    """apiauth could not give what was asked; `code` is the API's stable error code."""

    def __init__(self, code, message, status=None, details=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.details = code, message, status, details or {}


@dataclass(frozen=True)
class IssuedCredentials:
    """What apiauth said to add to a request, and until when this process keeps it."""

    headers: dict[str, str]
    query: dict[str, str]
    expires_at: float | None  # epoch seconds
    generation: int | None
    fresh_until: float = field(compare=False)

    @classmethod
    def from_answer(cls, answer, margin=MARGIN, max_age=MAX_AGE, now=None):
        """Make them from a credentials answer: fresh until a margin before expiry, or for max_age if they don't expire."""
        now = time.time() if now is None else now
        expires_at = answer.get("expires_at")
        if expires_at is None:
            fresh_until = now + max_age
        else:
            fresh_until = expires_at - min(margin, max(expires_at - now, 0.0) / 10)
        return cls(
            headers=dict(answer.get("headers") or {}),
            query=dict(answer.get("query") or {}),
            expires_at=expires_at,
            generation=answer.get("generation"),
            fresh_until=fresh_until,
        )

    @property
    def renewable(self):
        """Tell whether reporting a rejection can bring other credentials (an OAuth token)."""
        return self.generation is not None

    def sign_url(self, url):
        """Return the URL with these query parameters set, replacing any of the same names."""
        for name, value in self.query.items():
            url = with_query_parameter(url, name, value)
        return url


class CredentialCache:
    """One authenticator's credentials, kept until shortly before they expire; one fetch at a time.

    `fetch(min_validity)` returns a credentials answer; `report(status_code, generation)`
    tells apiauth that credentials were rejected. Both may raise ApiauthError.
    """

    def __init__(self, fetch, report, min_validity=0, margin=MARGIN, max_age=MAX_AGE):
        self._fetch, self._report = fetch, report
        self.min_validity, self.margin, self.max_age = min_validity, margin, max_age
        self._current = None
        self._lock = threading.Lock()

    def get(self):
        """Return credentials that are still fresh, fetching them if need be."""
        with self._lock:
            current = self._current
            if current is None or time.time() >= current.fresh_until:
                answer = self._fetch(self.min_validity)
                current = self._current = IssuedCredentials.from_answer(answer, self.margin, self.max_age)
            return current

    def reject(self, used, status_code=REJECTED):
        """Report that these credentials were rejected and forget them, unless that was done already."""
        with self._lock:
            if self._current is not used:
                return
            self._current = None
            self._report(status_code, used.generation)


_AuthBase = httpx.Auth if httpx is not None else object


class ApiauthAuth(_AuthBase):
    """Credentials of one authenticator as `auth=` for requests and httpx, with one retry on 401.

    On a 401 it reports the rejection, drops the cached credentials and, if apiauth then
    gives other ones (a new OAuth token), sends the request once more.
    """

    # httpx: read a streamed body first, so that the retry can send it again.
    requires_request_body = True

    def __init__(self, cache):
        self.cache = cache

    # requests: called with the prepared request; the response hook does the retry.
    def __call__(self, request):
        used = self.cache.get()
        self._sign_requests(request, used)
        request.register_hook("response", functools.partial(self._after_requests, signed=request, used=used))
        return request

    @staticmethod
    def _sign_requests(request, credentials):
        request.url = credentials.sign_url(request.url)
        request.headers.update(credentials.headers)

    def _after_requests(self, response, signed, used, **send_options):
        # A redirect's follow-up is another request: it may go to another host, so no retry there.
        if response.status_code != REJECTED or response.request is not signed:
            return response
        fresh = self._renewed(used)
        if fresh is None or not _resendable(signed):
            return response
        response.content  # Read it, so that the connection can serve the retry.
        response.close()
        retry = signed.copy()
        retry.hooks = {"response": []}
        if retry._body_position is not None:
            rewind_body(retry)
        self._sign_requests(retry, fresh)
        answer = response.connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        if answer.status_code == REJECTED:
            self.cache.reject(fresh)
        return answer

    def _renewed(self, used):
        """Report rejected credentials; return other ones to retry with, or None."""
        self.cache.reject(used)
        if not used.renewable:
            return None
        fresh = self.cache.get()
        return fresh if fresh != used else None

    # httpx, sync: each step of the flow may fetch credentials, which blocks.
    def auth_flow(self, request):
        used = self.cache.get()
        response = yield self._sign_httpx(request, used)
        if response.status_code != REJECTED:
            return
        fresh = self._renewed(used)
        if fresh is None:
            return
        response = yield self._sign_httpx(request, fresh)
        if response.status_code == REJECTED:
            self.cache.reject(fresh)

    # httpx, async: the same flow, each step in a worker thread so as not to block the event loop.
    async def async_auth_flow(self, request):
        await request.aread()
        flow = self.auth_flow(request)
        request = await anyio.to_thread.run_sync(_advance, flow, None)
        while request is not None:
            response = yield request
            request = await anyio.to_thread.run_sync(_advance, flow, response)

    @staticmethod
    def _sign_httpx(request, credentials):
        request.url = httpx.URL(credentials.sign_url(str(request.url)))
        request.headers.update(credentials.headers)
        return request


def _resendable(request):
    """Tell whether a requests body can be sent again: in memory, or a file that can be rewound."""
    return isinstance(request.body, bytes | str | None) or request._body_position is not None


def _advance(flow, response):
    """Send a response into an auth flow; return its next request, or None at its end."""
    try:
        return flow.send(response)
    except StopIteration:
        return None


class Apiauth:
    """apiauth's consumer API, reached with a service token: credentials, reports, relayed calls."""

    def __init__(self, base_url, token, *, timeout=TIMEOUT, margin=MARGIN, max_age=MAX_AGE, session=None):
        self.api_url = base_url.rstrip("/") + API_PREFIX
        self.timeout, self.margin, self.max_age = timeout, margin, max_age
        self.session = session or requests.Session()
        self._token = token
        self._ids = {}
        self._auths = {}
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Close the connections to apiauth."""
        self.session.close()

    def auth(self, authenticator, min_validity=0):
        """Return the auth object of an authenticator (an int id, or its name); one per authenticator."""
        with self._lock:
            key = (authenticator, min_validity)
            if key not in self._auths:
                cache = CredentialCache(
                    functools.partial(self.credentials, authenticator),
                    functools.partial(self.report, authenticator),
                    min_validity=min_validity,
                    margin=self.margin,
                    max_age=self.max_age,
                )
                self._auths[key] = ApiauthAuth(cache)
            return self._auths[key]

    def authenticators(self):
        """Return the authenticators this token may use, as the API lists them, every page."""
        found, params = [], {"after": 0}
        while True:
            page = self._call("GET", "/authenticators", params=params)
            found += page["authenticators"]
            if not page.get("next"):
                return found
            params = {"after": found[-1]["id"]}

    def authenticator_id(self, authenticator):
        """Return the id of an authenticator given by id or by name (ignoring case)."""
        if isinstance(authenticator, int):
            return authenticator
        if authenticator not in self._ids:
            found = self._call("GET", "/authenticators", params={"name": authenticator})["authenticators"]
            if not found:
                raise ApiauthError("not_found", f"This token reaches no authenticator named {authenticator!r}.", 404)
            self._ids[authenticator] = found[0]["id"]
        return self._ids[authenticator]

    def credentials(self, authenticator, min_validity=0):
        """Ask for fresh credentials: {"headers", "query", "expires_at", "generation"}; not cached."""
        return self._call(
            "POST", f"/authenticators/{self.authenticator_id(authenticator)}/credentials", {"min_validity": min_validity}
        )

    def report(self, authenticator, status_code, generation=None):
        """Tell apiauth how a call with its credentials went; a 4xx drops a rejected token."""
        return self._call(
            "POST",
            f"/authenticators/{self.authenticator_id(authenticator)}/report",
            {"status_code": status_code, "generation": generation},
        )

    def relay(self, authenticator, method, url, headers=(), body=""):
        """Have apiauth send a request with the credentials on it, to a host it allows; return the response.

        headers: a dict or (name, value) pairs. The answer: {"status_code", "headers" (pairs),
        "body" (text, credentials masked)}.
        """
        pairs = headers.items() if isinstance(headers, dict) else headers
        return self._call(
            "POST",
            f"/authenticators/{self.authenticator_id(authenticator)}/relay",
            {"method": method, "url": url, "headers": [[name, value] for name, value in pairs], "body": body},
        )

    def _call(self, method, path, payload=None, params=None):
        """Call the API; return its JSON answer or raise ApiauthError with its error code."""
        try:
            response = self.session.request(
                method,
                self.api_url + path,
                json=payload,
                params=params,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise ApiauthError("unreachable", f"apiauth did not answer: {type(error).__name__}.") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiauthError(f"http_{response.status_code}", "apiauth's answer is not a JSON object.", response.status_code)
        if response.status_code >= 400:
            details = {name: value for name, value in answer.items() if name not in ("error", "message")}
            code = answer.get("error") or f"http_{response.status_code}"
            raise ApiauthError(code, answer.get("message") or code, response.status_code, details)
        return answer
