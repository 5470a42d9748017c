"""Living inside an intranet portal: trusted proxies, the portal's user header, embed mode,
the session cookie and the security headers of every response.

See docs/embedding.md for the operator's side of each setting.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from flask import current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, user_logged_in
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix

from .auth import start_session
from .extensions import db
from .models import User

# Set in the WSGI environ when the immediate peer is one of APIAUTH_TRUSTED_PROXIES.
TRUSTED_PEER = "apiauth.trusted_peer"
EMBED_KEY = "embed"
# Browsers keep a __Host- cookie only if it is Secure, has Path=/ and no Domain.
HOST_PREFIX = "__Host-"
# A source of a CSP frame-ancestors list: a keyword, or a scheme, host (wildcard allowed) and port.
FRAME_SOURCE = re.compile(r"'self'|'none'|[a-z][a-z0-9+.-]*://(\*\.)?[A-Za-z0-9.-]+(:(\d+|\*))?|[a-z][a-z0-9+.-]*:")
USERNAME_MAX_LENGTH = 150


class TrustedProxies:
    """WSGI middleware: honour X-Forwarded-* and the portal's user header only from trusted peers.

    werkzeug's ProxyFix trusts whoever is in front of it; this decides by the peer's address
    first. From any other peer those headers are removed, so nothing later can read them.
    """

    def __init__(self, wsgi_app, networks, user_header):
        self.wsgi_app = wsgi_app
        self.proxy_fix = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self.networks = networks
        self.user_header_key = environ_key(user_header) if user_header else None

    def __call__(self, environ, start_response):
        if self.is_trusted(environ.get("REMOTE_ADDR", "")):
            environ[TRUSTED_PEER] = True
            return self.proxy_fix(environ, start_response)
        for key in [key for key in environ if self.is_proxy_header(key)]:
            del environ[key]
        return self.wsgi_app(environ, start_response)

    def is_trusted(self, address):
        """Tell whether an address is in one of the trusted networks."""
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self.networks)

    def is_proxy_header(self, key):
        """Tell whether an environ key is a header only a trusted proxy may set."""
        return key.startswith("HTTP_X_FORWARDED_") or key == "HTTP_FORWARDED" or key == self.user_header_key


def environ_key(header):
    """Return the WSGI environ key of a request header (a client's `_` arrives as `_` too)."""
    return "HTTP_" + header.upper().replace("-", "_")


def parse_networks(values):
    """Turn the addresses and CIDR networks of APIAUTH_TRUSTED_PROXIES into networks."""
    try:
        return [ipaddress.ip_network(value, strict=False) for value in values]
    except ValueError as error:
        raise ValueError(f"APIAUTH_TRUSTED_PROXIES: {error}") from None


def check_frame_ancestors(sources):
    """Return the frame-ancestors sources, or stop with a message naming the one that is not a source."""
    for source in sources:
        if not FRAME_SOURCE.fullmatch(source):
            raise ValueError(
                f"APIAUTH_FRAME_ANCESTORS: {source!r} is not a CSP source; use 'self', 'none' or origins "
                "such as https://portal.example.com"
            )
    return sources


def check_theme_url(url):
    """Return the theme stylesheet's URL, or stop with a message if it is neither an http(s) URL nor a path."""
    origin = origin_of(url)
    is_path = url.startswith("/") and not url.startswith("//")
    is_web_url = origin.startswith(("https://", "http://")) and FRAME_SOURCE.fullmatch(origin)
    if url and not (is_path or is_web_url):
        raise ValueError(f"APIAUTH_THEME_URL: {url!r} is neither an http(s) URL nor a path such as /portal/theme.css")
    return url


def embedding_configured(app):
    """Tell whether origins other than our own may frame the UI."""
    return any(source not in ("'self'", "'none'") for source in app.config["FRAME_ANCESTORS"])


def content_security_policy(app):
    """Build the Content-Security-Policy: our own scripts and styles only, framed by the setting."""
    theme_origin = origin_of(app.config["THEME_URL"])
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": f"'self' {theme_origin}".strip(),
        "img-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": " ".join(app.config["FRAME_ANCESTORS"]),
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def origin_of(url):
    """Return scheme://host[:port] of an absolute URL, or '' for a path or nothing."""
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


class PortalSessionInterface(SecureCookieSessionInterface):
    """The signed session cookie, with attributes decided per request.

    Per request, because one instance may answer the portal over https and a health check
    or an admin over plain http: a Secure cookie sent over http is dropped by the browser.
    """

    def get_cookie_name(self, app):
        """Name the cookie __Host-... where the browser will honour the prefix."""
        prefixed = (
            request.is_secure and self.get_cookie_path(app) == "/" and self.get_cookie_domain(app) is None
        )
        return (HOST_PREFIX if prefixed else "") + app.config["SESSION_COOKIE_NAME"]

    def get_cookie_secure(self, app):
        """Mark the cookie Secure over https, and always when framed by another site (SameSite=None needs it)."""
        return request.is_secure or embedding_configured(app)

    def get_cookie_samesite(self, app):
        """Send the cookie in a cross-site frame only when embedding is configured."""
        return "None" if embedding_configured(app) else app.config["SESSION_COOKIE_SAMESITE"]

    def get_cookie_httponly(self, app):
        """Keep the cookie out of reach of scripts, whatever the config says."""
        return True


def init_app(app):
    """Wire the portal's parts into the app: middleware, session cookie, request hooks, headers."""
    check_frame_ancestors(app.config["FRAME_ANCESTORS"])
    check_theme_url(app.config["THEME_URL"])
    app.wsgi_app = TrustedProxies(
        app.wsgi_app, parse_networks(app.config["TRUSTED_PROXIES"]), app.config["TRUSTED_USER_HEADER"]
    )
    app.session_interface = PortalSessionInterface()
    policy = content_security_policy(app)

    @app.after_request
    def add_security_headers(response):
        """Put the security headers on every response, errors and redirects included."""
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            # Pages, partials and JSON may show authenticators or credentials: never keep them.
            response.headers["Cache-Control"] = "no-store"
        return response

    app.before_request(remember_embed_mode)
    app.before_request(sign_in_portal_user)
    user_logged_in.connect(keep_embed_mode_across_sign_in, app)
    app.context_processor(lambda: {"embedded": g.get("embedded", False), "theme_url": app.config["THEME_URL"]})


def serves_pages():
    """Tell whether this request may use the session: not a static file, not the bearer-token API."""
    from .api import is_api_request

    return request.endpoint != "static" and not is_api_request()


def remember_embed_mode():
    """Turn embed mode on with ?embed=1 and off with ?embed=0, for the rest of the session."""
    if not serves_pages():
        return
    choice = request.args.get("embed")
    if choice == "1":
        session[EMBED_KEY] = True
    elif choice == "0":
        session.pop(EMBED_KEY, None)
    g.embedded = session.get(EMBED_KEY, False)


def keep_embed_mode_across_sign_in(app, user):
    """Put embed mode back into the session that signing in just cleared."""
    if g.get("embedded"):
        session[EMBED_KEY] = True


def sign_in_portal_user():
    """Sign in the user the trusted portal names in its header; the header wins over the session."""
    header = current_app.config["TRUSTED_USER_HEADER"]
    if not header or not request.environ.get(TRUSTED_PEER) or not serves_pages():
        return
    username = portal_username(request.headers.get(header, ""))
    if not username or (current_user.is_authenticated and current_user.username == username):
        return
    start_session(portal_user(username))
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        # A form the previous user opened must not be carried out for the new one.
        raise CSRFError("The CSRF token belongs to the user the portal signed in before.")


def portal_username(value):
    """Decode the header's user name (UTF-8 sent as bytes), or refuse one we cannot store."""
    try:
        username = value.encode("latin-1").decode("utf-8").strip()
    except UnicodeError:
        raise BadRequest("The portal sent a user name that is not UTF-8.") from None
    if len(username) > USERNAME_MAX_LENGTH or any(ord(character) < 32 for character in username):
        raise BadRequest("The portal sent a user name apiauth cannot store.")
    return username


def portal_user(username):
    """Return the user of that name, created on first sight without any privilege or password."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is not None:
        return user
    db.session.add(User(username=username))
    try:
        db.session.commit()
    except IntegrityError:
        # Another request of the same portal user created it first.
        db.session.rollback()
    return db.session.scalar(select(User).where(User.username == username))


def is_portal_page(url):
    """Tell whether a URL is a page of an origin allowed to frame the UI, where a framed Login returns."""
    allowed = set(current_app.config["FRAME_ANCESTORS"])
    if "'self'" in allowed:
        allowed.add(origin_of(request.host_url))
    return origin_of(url) in allowed - {""}
