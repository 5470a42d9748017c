"""The Domain Management gate, the current domain, and lookups scoped to it."""

import functools

from flask import abort, g, redirect, request, session, url_for
from flask_login import current_user

from .models import Authenticator, Domain, find

GATE_ATTRIBUTE = "domain_management_gate"


def is_htmx():
    """Tell whether htmx asked for a partial (a history restore wants the whole page)."""
    return (
        request.headers.get("HX-Request") == "true"
        and "HX-History-Restore-Request" not in request.headers
    )


def sign_in_required_response():
    """Send an anonymous visitor to sign-in: a redirect, or 401 with HX-Redirect for htmx."""
    login_url = url_for("auth.login", next=request.script_root + request.full_path.rstrip("?"))
    if is_htmx():
        return "", 401, {"HX-Redirect": login_url}
    return redirect(login_url)


def current_domain():
    """Return the domain the signed-in user is working in, or None."""
    if "current_domain" in g:
        return g.current_domain
    domain = None
    if current_user.is_authenticated:
        managed = [m for m in current_user.memberships if m.domain_manager]
        candidates = managed or current_user.memberships
        chosen = [m for m in candidates if m.domain_id == session.get("domain_id")]
        if chosen or candidates:
            domain = (chosen or sorted(candidates, key=lambda m: m.domain.name))[0].domain
    g.current_domain = domain
    return domain


def domain_management_required(view):
    """Let a view run only for a user holding Domain Management in the current domain."""

    @functools.wraps(view)
    def gated(*args, **kwargs):
        if not current_user.is_authenticated:
            return sign_in_required_response()
        domain = current_domain()
        if domain is None or not current_user.manages(domain.id):
            abort(403)
        return view(*args, **kwargs)

    setattr(gated, GATE_ATTRIBUTE, True)
    return gated


def get_authenticator(authenticator_id):
    """Return an authenticator of the current domain, or answer 404."""
    authenticator = find(Authenticator, authenticator_id)
    if authenticator is None or authenticator.domain_id != current_domain().id:
        abort(404)
    return authenticator


def switch_domain(domain_id):
    """Make a domain current for this session, if the user manages it."""
    domain = find(Domain, domain_id)
    if domain is None or not current_user.manages(domain.id):
        abort(403)
    session["domain_id"] = domain.id
    g.pop("current_domain", None)
    return domain
