"""The audit page of the current domain."""

from flask import Blueprint, render_template, request

from ..access import current_domain, domain_management_required, is_htmx
from ..pane.views import vary_on_htmx
from .queries import AuditQuery, audit_page, filter_choices

bp = Blueprint("audit", __name__)
bp.after_request(vary_on_htmx)
PAGE_SIZE = 50


@bp.route("/audit")
@domain_management_required
def index():
    """List the domain's audit events, newest first, filtered by authenticator, actor and action."""
    domain_id = current_domain().id
    query = AuditQuery.from_args(request.args)
    page = audit_page(domain_id, query, PAGE_SIZE)
    if is_htmx():
        return render_template("audit/_events.html", page=page, query=query)
    return render_template("audit/index.html", page=page, query=query, choices=filter_choices(domain_id))
