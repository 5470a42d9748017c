"""The pane: every authenticator of the current domain, and the actions on one."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import current_domain, domain_management_required, get_authenticator, is_htmx
from ..services import delete_authenticator, duplicate_authenticator
from .queries import PaneQuery, pane_page

bp = Blueprint("pane", __name__)


@bp.after_request
def vary_on_htmx(response):
    """Tell caches that pages and partials share URLs."""
    response.vary.add("HX-Request")
    return response


@bp.route("/authenticators")
@domain_management_required
def index():
    """List the current domain's authenticators: search, sort, page."""
    query = PaneQuery.from_args(request.args)
    page = pane_page(current_domain().id, query, current_app.config["PANE_PAGE_SIZE"])
    template = "pane/_results.html" if is_htmx() else "pane/index.html"
    return render_template(template, page=page, query=query)


@bp.route("/authenticators/<int:authenticator_id>/status")
@domain_management_required
def status(authenticator_id):
    """Render an authenticator's status cell."""
    authenticator = get_authenticator(authenticator_id)
    return render_template("pane/_status_cell.html", authenticator=authenticator)


@bp.route("/authenticators/<int:authenticator_id>/delete", methods=["GET", "POST"])
@domain_management_required
def delete(authenticator_id):
    """Ask to confirm, then delete an authenticator."""
    authenticator = get_authenticator(authenticator_id)
    if request.method == "GET":
        return render_template("pane/confirm_delete.html", authenticator=authenticator)
    name = authenticator.name
    delete_authenticator(authenticator, current_user)
    flash(f"Authenticator “{name}” deleted.")
    return redirect(url_for("pane.index"))


@bp.route("/authenticators/<int:authenticator_id>/duplicate", methods=["POST"])
@domain_management_required
def duplicate(authenticator_id):
    """Copy an authenticator and open the copy."""
    copy = duplicate_authenticator(get_authenticator(authenticator_id), current_user)
    flash(f"Duplicated as “{copy.name}”. Review it and save.")
    return redirect(url_for("editor.edit", authenticator_id=copy.id))
