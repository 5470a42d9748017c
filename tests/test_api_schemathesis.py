"""Schemathesis, in-process: generated calls to every operation of the API's OpenAPI document.

No answer may be a server error, and every answer must be one the document describes,
whether the call fits the document (positive) or not (negative).
"""

import socket

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apiauth.api import URL_PREFIX
from apiauth.api.openapi import openapi_document
from apiauth.service_tokens import create_service_token



def no_server_error(ctx, response, case):
    """Fail any 5xx but 502, with which the API says that a third party failed."""
    if response.status_code != 502:
        return not_a_server_error(ctx, response, case)
    return None


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = [
    (method.upper(), path, mode)
    for path, item in openapi_document(URL_PREFIX)["paths"].items()
    for method in item
    if method != "parameters"
    for mode in GenerationMode
    # The document itself takes no input that could be wrong.
    if not (path == "/openapi.json" and mode == GenerationMode.NEGATIVE)
]


@pytest.fixture
def token(domain):
    """A manage token: every operation is open to it."""
    return create_service_token(domain, "schemathesis", "manage")[1]


@pytest.fixture
def authenticator_ids(make_authenticator):
    """One authenticator of each kind, for generated calls to reach: random ids would all be 404."""
    oauth = {"method": "oauth2", "access_token_url": "https://auth.example.com/token", "client_id": "client-1",
             "secrets": {"client_secret": "client-secret-1"}}
    made = [
        make_authenticator("Key", secrets={"value": "key-value-1"}, allowed_hosts=["api.example.com"]),
        make_authenticator("Basic", method="basic", secrets={"password": "password-1"}),
        make_authenticator("Machine", grant_type="client_credentials", **oauth),
        make_authenticator("Mailbox", grant_type="authorization_code", auth_url="https://auth.example.com/a",
                           status="need_login", **oauth),
    ]
    return [authenticator.id for authenticator in made]


@pytest.fixture
def no_outbound_calls(monkeypatch):
    """Generated URLs name arbitrary hosts: no call may leave the process or wait on DNS."""

    def unresolvable(*args, **kwargs):
        raise socket.gaierror("no outbound calls in this test")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)


@pytest.mark.parametrize("method, path, mode", OPERATIONS, ids=["-".join(map(str, o)) for o in OPERATIONS])
def test_every_answer_is_documented_and_none_is_a_server_error(app, token, authenticator_ids, no_outbound_calls,
                                                                method, path, mode):
    operation = schemathesis.openapi.from_wsgi(f"{URL_PREFIX}/openapi.json", app)[path][method]
    headers = {"Authorization": f"Bearer {token}"}
    strategies = [operation.as_strategy(generation_mode=mode)]
    if "{authenticator_id}" in path:
        strategies += [
            operation.as_strategy(generation_mode=mode, path_parameters={"authenticator_id": authenticator_id})
            for authenticator_id in authenticator_ids
        ]

    @given(case=st.one_of(strategies))
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    def call(case):
        # An app context per call, as in production: nothing leaks from one call to the next.
        with app.app_context():
            case.call_and_validate(headers=headers, checks=CHECKS)

    call()
