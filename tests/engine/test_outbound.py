"""Outbound requests: blocked addresses, DNS rebinding, timeouts, TLS, size cap, redirects."""

import gzip
import socket
import time

import pytest
from werkzeug import Response

from apiauth.engine.outbound import OutboundError, OutboundPolicy, send

BLOCKED_BY_DEFAULT = [
    "127.0.0.1",  # loopback
    "::1",
    "10.1.2.3",  # private
    "172.16.5.4",
    "192.168.1.1",
    "fc00::1",  # unique local
    "fd12:3456::1",
    "0.0.0.0",  # unspecified
    "::",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "100.64.0.1",  # shared address space
]
NEVER_ALLOWED = [
    "169.254.169.254",  # link-local, the usual cloud metadata address
    "169.254.0.1",
    "fe80::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud metadata
    "::ffff:169.254.169.254",
]
INVALID_URLS = [
    "",
    "api.test/path",
    "ftp://api.test/",
    "http://",
    "http://exa mple.com/",
    "http://[::1/",
    "http://a:99999/",
]


def _reason(policy, url, **kwargs):
    with pytest.raises(OutboundError) as caught:
        send(policy, "GET", url, **kwargs)
    return caught.value.reason


@pytest.mark.parametrize("address", BLOCKED_BY_DEFAULT + NEVER_ALLOWED)
def test_non_public_addresses_are_blocked_by_default(address):
    assert not OutboundPolicy().allows(address)


@pytest.mark.parametrize("address", NEVER_ALLOWED)
def test_link_local_and_metadata_addresses_are_blocked_even_when_allowed(address):
    assert not OutboundPolicy(allow_networks=["0.0.0.0/0", "::/0"]).allows(address)


@pytest.mark.parametrize("address", BLOCKED_BY_DEFAULT)
def test_allow_networks_opens_other_non_public_addresses(address):
    assert OutboundPolicy(allow_networks=["0.0.0.0/0", "::/0"]).allows(address)


def test_public_addresses_are_allowed():
    assert OutboundPolicy().allows("93.184.215.14")
    assert OutboundPolicy().allows("2606:4700::1111")


def test_a_bad_network_fails_when_the_policy_is_made():
    with pytest.raises(ValueError):
        OutboundPolicy(allow_networks=["not-a-network"])


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "[fd00:ec2::254]", "[::1]"])
def test_a_blocked_literal_address_is_never_connected(address, connect_attempts):
    assert _reason(OutboundPolicy(), f"http://{address}/") == "blocked_address"
    assert connect_attempts == []


def test_a_name_with_one_blocked_address_among_several_is_blocked(fake_dns, connect_attempts, silent_listener):
    port = silent_listener.getsockname()[1]
    fake_dns.records["api.test"] = ["127.0.0.1", "93.184.215.14", "169.254.169.254"]
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"])
    assert _reason(policy, f"http://api.test:{port}/") == "blocked_address"
    assert connect_attempts == []
    with pytest.raises(TimeoutError):
        silent_listener.accept()  # nobody came


def test_the_name_is_resolved_once_and_the_checked_address_is_connected(fake_dns, connect_attempts, fault_server):
    fault_server.expect_request("/").respond_with_data("ok")
    fake_dns.records["api.test"] = ["127.0.0.1"]
    response = send(OutboundPolicy(allow_networks=["127.0.0.0/8"]), "GET", f"http://api.test:{fault_server.port}/")
    assert response.text == "ok"
    assert fake_dns.lookups == ["api.test"]
    assert connect_attempts == [("127.0.0.1", fault_server.port)]


def test_the_host_header_keeps_the_name(fake_dns, fault_server, policy):
    fault_server.expect_request("/").respond_with_data("ok")
    fake_dns.records["api.test"] = ["127.0.0.1"]
    send(policy, "GET", f"http://api.test:{fault_server.port}/")
    request, _ = fault_server.log[0]
    assert request.headers["Host"] == f"api.test:{fault_server.port}"


def test_tls_sends_the_name_as_sni_and_verifies_the_certificate(fake_dns, tls_listener, policy):
    fake_dns.records["api.example.test"] = ["127.0.0.1"]
    assert _reason(policy, f"https://api.example.test:{tls_listener.port}/") == "tls_error"
    assert tls_listener.server_names == ["api.example.test"]


def test_tls_to_a_plain_http_server_is_a_tls_error(fault_server, policy):
    assert _reason(policy, fault_server.url_for("/").replace("http:", "https:")) == "tls_error"


def test_a_server_that_never_answers_times_out(silent_listener):
    port = silent_listener.getsockname()[1]
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"], read_timeout=0.2)
    assert _reason(policy, f"http://127.0.0.1:{port}/") == "timeout"


def _fill_backlog(port):
    """Open connections until the listener's queue is full; return them."""
    queued = []
    while len(queued) < 20:
        try:
            queued.append(socket.create_connection(("127.0.0.1", port), timeout=0.1))
        except TimeoutError:
            return queued
    raise AssertionError("the listen queue never filled up")


def test_a_connection_that_is_never_accepted_times_out(silent_listener):
    port = silent_listener.getsockname()[1]
    queued = _fill_backlog(port)
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"], connect_timeout=0.2, read_timeout=5)
    started = time.monotonic()
    try:
        assert _reason(policy, f"http://127.0.0.1:{port}/") == "timeout"
        assert time.monotonic() - started < 2  # the connect timeout, not the read timeout
    finally:
        for connection in queued:
            connection.close()


def test_a_closed_port_refuses_the_connection(policy):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    assert _reason(policy, f"http://127.0.0.1:{port}/") == "connection_refused"


@pytest.mark.parametrize("url", INVALID_URLS)
def test_an_invalid_url_fails_without_a_request(url, policy, connect_attempts):
    assert _reason(policy, url) == "invalid_url"
    assert connect_attempts == []


def test_an_unknown_host_name_is_not_resolved(policy):
    assert _reason(policy, "http://no-such-host.invalid/") == "name_not_resolved"


def test_a_response_under_the_cap_is_read_whole(fault_server):
    fault_server.expect_request("/").respond_with_data("x" * 1000)
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"], max_response_bytes=1000)
    assert len(send(policy, "GET", fault_server.url_for("/")).content) == 1000


@pytest.mark.parametrize(
    "response",
    [
        Response(b"x" * 1001),
        Response(iter([b"x" * 600, b"y" * 600])),  # chunked, no Content-Length
        Response(gzip.compress(b"0" * 100_000), headers={"Content-Encoding": "gzip"}),  # small on the wire
    ],
    ids=["content-length", "chunked", "gzip"],
)
def test_a_response_over_the_cap_is_too_large(fault_server, response):
    fault_server.expect_request("/").respond_with_response(response)
    policy = OutboundPolicy(allow_networks=["127.0.0.0/8"], max_response_bytes=1000)
    assert _reason(policy, fault_server.url_for("/")) == "response_too_large"


def test_redirects_are_not_followed_unless_asked(fault_server, policy):
    fault_server.expect_request("/from").respond_with_data("", status=302, headers={"Location": "/to"})
    fault_server.expect_request("/to").respond_with_data("arrived")
    assert send(policy, "GET", fault_server.url_for("/from")).status_code == 302
    assert [request.path for request, _ in fault_server.log] == ["/from"]
    assert send(policy, "GET", fault_server.url_for("/from"), follow_redirects=True).text == "arrived"


def test_a_redirect_to_a_blocked_address_is_blocked(fault_server, policy, connect_attempts):
    location = "http://169.254.169.254/latest/meta-data/"
    fault_server.expect_request("/from").respond_with_data("", status=302, headers={"Location": location})
    assert _reason(policy, fault_server.url_for("/from"), follow_redirects=True) == "blocked_address"
    assert connect_attempts == [("127.0.0.1", fault_server.port)]


def test_the_body_and_headers_are_sent(fault_server, policy):
    fault_server.expect_request("/echo", method="POST").respond_with_data("ok")
    send(policy, "POST", fault_server.url_for("/echo"), headers={"X-A": "1"}, body="grüße")
    request, _ = fault_server.log[0]
    assert request.headers["X-A"] == "1"
    assert request.get_data() == "grüße".encode("utf-8")
