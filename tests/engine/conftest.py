"""Fixtures for the engine tests: a fast outbound policy, a local fault server, fake DNS."""

import datetime
import socket
import ssl
import threading
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pytest_httpserver import HTTPServer

from apiauth.engine.outbound import OutboundPolicy, Retries

LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
def policy():
    """A policy that reaches loopback, with small timeouts and quick retries."""
    return OutboundPolicy(
        allow_networks=LOOPBACK,
        connect_timeout=1,
        read_timeout=1,
        retries=Retries(attempts=3, backoff=0.01, budget=2),
    )


@pytest.fixture(scope="session")
def _fault_server():
    """One local HTTP server on 127.0.0.1 for the whole session."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def fault_server(_fault_server):
    """The local HTTP server, with no handlers and an empty log."""
    _fault_server.clear()
    yield _fault_server
    _fault_server.clear()


@pytest.fixture
def fake_dns(monkeypatch):
    """Answer chosen host names with chosen addresses: fake_dns.records["api.test"] = ["127.0.0.1"]."""
    real_getaddrinfo = socket.getaddrinfo
    dns = SimpleNamespace(records={}, lookups=[])

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in dns.records:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        dns.lookups.append(host)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in dns.records[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return dns


@pytest.fixture
def connect_attempts(monkeypatch):
    """Record every address that any socket tries to connect to."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        attempts.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def silent_listener():
    """A listening socket that accepts connections (in the kernel) but never answers them."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1)
    listener.settimeout(0.2)
    yield listener
    listener.close()


@pytest.fixture
def tls_listener(tmp_path):
    """A TLS port with a self-signed certificate that records the SNI names it receives."""
    certificate, key = _self_signed(tmp_path, "api.example.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    server = SimpleNamespace(port=listener.getsockname()[1], server_names=[])
    context.sni_callback = lambda sock, name, ctx: server.server_names.append(name)

    def serve():
        try:
            connection, _ = listener.accept()
            with context.wrap_socket(connection, server_side=True):
                pass
        except OSError:  # the client rejects the certificate, or nobody came
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    listener.close()
    thread.join(5)


def _self_signed(folder, host_name):
    """Write a self-signed certificate and key for host_name; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = folder / "cert.pem", folder / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate_path, key_path
