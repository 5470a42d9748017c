"""Safe outbound HTTP: address blocking, timeouts, TLS verification and a response size cap.

Every connection resolves its host name once, checks every address the name resolves
to, and then connects only to those checked addresses, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot reach a blocked address.
The URL's host name still goes into the Host header and the TLS SNI and certificate check.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.connection import create_connection

# Link-local and cloud metadata addresses: blocked even when allow_networks covers them.
ALWAYS_BLOCKED = tuple(
    ip_network(network)
    for network in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
)
MAX_REDIRECTS = 5
CHUNK_SIZE = 64 * 1024


class OutboundError(Exception):
    """An outbound request failed; `reason` is a short code such as `timeout`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Retries:
    """How token requests retry 5xx and 429 answers: attempts, first backoff, total time."""

    attempts: int = 3
    backoff: float = 0.5
    budget: float = 10.0


@dataclass(frozen=True)
class OutboundPolicy:
    """Where outbound requests may go and how long and how large they may be."""

    allow_networks: Sequence[str] = ()
    connect_timeout: float = 5
    read_timeout: float = 15
    max_response_bytes: int = 1_000_000
    retries: Retries = Retries()
    _networks: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # Parse once, so that a bad CIDR fails when the policy is made, not on first use.
        object.__setattr__(self, "allow_networks", tuple(self.allow_networks))
        networks = tuple(ip_network(network.strip(), strict=False) for network in self.allow_networks)
        object.__setattr__(self, "_networks", networks)

    def allows(self, address: str) -> bool:
        """Return whether a connection to this IP address is allowed."""
        ip = _unmapped(ip_address(address))
        if any(ip in network for network in ALWAYS_BLOCKED):
            return False
        if ip.is_global and not ip.is_multicast:
            return True
        return any(ip in network for network in self._networks)

    def resolve(self, host: str, port: int) -> list[str]:
        """Return every address of host, or raise OutboundError if any of them is blocked."""
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise OutboundError("name_not_resolved") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not all(self.allows(address) for address in addresses):
            raise OutboundError("blocked_address")
        return addresses


def _unmapped(ip: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """Return the IPv4 address inside an IPv4-mapped IPv6 address, else the address itself."""
    return getattr(ip, "ipv4_mapped", None) or ip


def _connect(policy: OutboundPolicy, host: str, port: int, connection: HTTPConnection) -> socket.socket:
    """Open a socket to the first reachable checked address of host."""
    reason = "connection_error"
    for address in policy.resolve(host, port):
        try:
            return create_connection(
                (address, port),
                policy.connect_timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except TimeoutError:
            reason = "timeout"
        except ConnectionRefusedError:
            reason = "connection_refused"
        except OSError:
            reason = "connection_error"
    raise OutboundError(reason)


class _GuardedConnectionMixin:
    """Make urllib3 connect only to addresses the policy allows."""

    def __init__(self, *args, policy: OutboundPolicy, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = policy

    def _new_conn(self) -> socket.socket:
        """Connect to a checked address of the host; the host name stays for Host and SNI."""
        return _connect(self.policy, self._dns_host, self.port, self)


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    """A plain HTTP connection to checked addresses only."""


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    """A TLS connection to checked addresses only."""


class _GuardedHTTPPool(HTTPConnectionPool):
    """A pool of guarded plain HTTP connections."""

    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    """A pool of guarded TLS connections."""

    ConnectionCls = _GuardedHTTPSConnection


class _GuardedPoolManager(PoolManager):
    """A pool manager whose pools hand the policy to every connection."""

    def __init__(self, policy: OutboundPolicy, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def _new_pool(self, scheme, host, port, request_context=None):
        """Create a pool whose connections get the policy."""
        context = dict(request_context or self.connection_pool_kw, policy=self.policy)
        return super()._new_pool(scheme, host, port, context)


class GuardedAdapter(HTTPAdapter):
    """A requests adapter that enforces an OutboundPolicy on every request it sends."""

    def __init__(self, policy: OutboundPolicy):
        self.policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        """Use the guarded pool manager."""
        self.poolmanager = _GuardedPoolManager(
            self.policy, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        """Refuse proxies: they would connect to addresses that were never checked."""
        raise OutboundError("blocked_address")

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        """Send with the policy's timeouts and TLS verification, and read the body under the cap."""
        with translated_errors():
            response = super().send(
                request,
                stream=True,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                verify=verify or True,
                cert=cert,
            )
            body = _read_capped(response, self.policy)
        # requests keeps a read body here; setting it means nobody reads the socket again.
        response._content, response._content_consumed = body, True
        return response


def _read_capped(response: requests.Response, policy: OutboundPolicy) -> bytes:
    """Read the decoded body, failing once it passes the size cap or the read timeout."""
    deadline = time.monotonic() + policy.read_timeout
    chunks, size = [], 0
    with response:
        for chunk in response.raw.stream(CHUNK_SIZE, decode_content=True):
            size += len(chunk)
            if size > policy.max_response_bytes:
                raise OutboundError("response_too_large")
            if time.monotonic() > deadline:
                raise OutboundError("timeout")
            chunks.append(chunk)
    return b"".join(chunks)


def _reason(error: Exception) -> str:
    """Return the short reason for a requests or urllib3 failure."""
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return "timeout"
    if isinstance(error, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
        return "tls_error"
    if isinstance(
        error,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            urllib3.exceptions.LocationValueError,
        ),
    ):
        return "invalid_url"
    if isinstance(error, (requests.exceptions.InvalidHeader, ValueError)):
        return "invalid_request"
    return "connection_error"


@contextmanager
def translated_errors():
    """Turn requests and urllib3 failures inside the block into OutboundError."""
    try:
        yield
    except OutboundError:
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as error:
        # "from None": the original message may carry the URL, and with it a query secret.
        raise OutboundError(_reason(error)) from None


def guard_session(session: requests.Session, policy: OutboundPolicy) -> requests.Session:
    """Route every request of a requests session through the policy and return the session."""
    session.trust_env = False  # no proxies or CA bundles from the environment
    session.max_redirects = MAX_REDIRECTS
    adapter = GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send(
    policy: OutboundPolicy,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    follow_redirects: bool = False,
) -> requests.Response:
    """Send one request under the policy and return the response with its body read."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    with guard_session(requests.Session(), policy) as session, translated_errors():
        return session.request(
            method, url, headers=headers, data=data or None, allow_redirects=follow_redirects
        )
