"""A stand-in intranet portal for the embedding tests: an https reverse proxy and a page that frames apiauth.

Two threaded https servers on 127.0.0.1 (a self-signed certificate for `localhost`), one for the
portal's page and one for the app, both reached as `localhost`: different origins (their ports
differ) on the same site, as intranet.example.com and apiauth.example.com are. Browsers refuse
cookies to a frame of another site where third-party cookies are blocked (Chromium's incognito
contexts, which Playwright's are, block them), so a portal and apiauth share a site.

Each server does everything:
- under PREFIX it forwards to the app, as the portal's reverse proxy does: the prefix taken off
  the path, X-Forwarded-For/-Proto/-Host/-Prefix and the portal's user header set (whatever the
  browser sent in their place is dropped);
- PAGE_PATH is the portal's page, with apiauth in an iframe; `/theme.css` restyles apiauth.
"""

import contextlib
import datetime
import http.client
import ipaddress
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PREFIX = "/portal/apiauth"
PAGE_PATH = "/apps/apiauth"
USER_HEADER = "X-Remote-User"
THEME_ACCENT = "rgb(122, 31, 162)"
# Hop-by-hop headers (RFC 9110), and those only the proxy itself may set.
NOT_FORWARDED = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "host", "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
    "x-forwarded-prefix", USER_HEADER.lower(),
}
PORTAL_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Intranet portal</title>
<style>body {{ margin: 0; font-family: serif; }} header {{ background: #2d2d2d; color: #fff; padding: 8px 16px; }}
iframe {{ border: 0; width: 100%; height: 760px; }}</style></head>
<body>
<header><strong>Intranet portal</strong> · API Authenticators</header>
<iframe id="apiauth" title="API Authenticators" src="{frame_url}" referrerpolicy="no-referrer-when-downgrade"></iframe>
</body>
</html>
"""
THEME = f":root {{ --apiauth-accent: {THEME_ACCENT}; --apiauth-font: Georgia, serif; }}\n"


class Portal:
    """The running portal: its page's origin, apiauth's origin, the app it forwards to, the user it signs in."""

    def __init__(self, page_server, proxy_server):
        self.page_server = page_server
        self.proxy_server = proxy_server
        self.upstream = None
        self.user = None

    @property
    def origin(self):
        """The origin of the portal's own page."""
        return f"https://localhost:{self.page_server.server_port}"

    @property
    def page_url(self):
        """The portal page that frames apiauth."""
        return self.origin + PAGE_PATH

    @property
    def app_url(self):
        """Where the browser reaches apiauth: the proxy, under the prefix."""
        return f"https://localhost:{self.proxy_server.server_port}{PREFIX}"


class QuietServer(ThreadingHTTPServer):
    """Leave out the noise of browsers hanging up and of their first try of an unknown certificate."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)


class PortalHandler(BaseHTTPRequestHandler):
    """Serve the portal's page and theme; forward everything under PREFIX to the app."""

    protocol_version = "HTTP/1.0"
    portal: Portal

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def handle_any(self):
        path = urlsplit(self.path).path
        if path == PREFIX or path.startswith(PREFIX + "/"):
            self.forward(self.path[len(PREFIX):] or "/")
        elif path == PAGE_PATH:
            self.reply(200, "text/html", PORTAL_PAGE.format(frame_url=f"{self.portal.app_url}/?embed=1"))
        elif path == "/theme.css":
            self.reply(200, "text/css", THEME)
        else:
            self.reply(404, "text/plain", "not found")

    def forward(self, path):
        """Send the request on to the app with the proxy's headers; return its answer untouched."""
        upstream = urlsplit(self.portal.upstream)
        headers = {name: value for name, value in self.headers.items() if name.lower() not in NOT_FORWARDED}
        headers.update({
            "Host": upstream.netloc,
            "X-Forwarded-For": self.client_address[0],
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": self.headers["Host"],
            "X-Forwarded-Prefix": PREFIX,
        })
        if self.portal.user:
            headers[USER_HEADER] = self.portal.user
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        try:
            connection.request(self.command, path, body=body or None, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in NOT_FORWARDED | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        finally:
            connection.close()

    def reply(self, status, content_type, text):
        content = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format, *args):
        pass


def self_signed_certificate(directory):
    """Write a certificate and key for localhost and 127.0.0.1; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / "portal.crt", Path(directory) / "portal.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def running_portal():
    """Run the portal's two servers on free ports; yield the portal (set .upstream to the app's URL)."""
    with tempfile.TemporaryDirectory() as directory:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self_signed_certificate(directory))
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(serve_https(context)) for _ in range(2)]
        portal = Portal(*servers)
        for server in servers:
            server.RequestHandlerClass = type("BoundPortalHandler", (PortalHandler,), {"portal": portal})
        yield portal


@contextlib.contextmanager
def serve_https(context):
    """Serve over https from a background thread on a free port of 127.0.0.1; yield the server."""
    server = QuietServer(("127.0.0.1", 0), PortalHandler)
    # The handshake happens in each request's thread: a browser's idle preconnection blocks nobody.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="portal", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
