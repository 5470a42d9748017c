"""The pane: every authenticator of the current domain, and the actions on one."""

from datetime import datetime, timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import current_domain, domain_management_required, get_authenticator, is_htmx
from ..authentication import (
    engine_config,
    run_authenticator_test,
    sign_tested_result,
    status_of,
)
from ..editor.forms import TestRequestForm
from ..editor.views import build_form
from ..models import utcnow
from ..services import delete_authenticator, duplicate_authenticator
from .queries import PaneQuery, pane_page, status_changes

bp = Blueprint("pane", __name__)
POLL_OVERLAP = timedelta(seconds=5)


@bp.after_request
def vary_on_htmx(response):
    """Tell caches that pages and partials share URLs."""
    response.vary.update(("HX-Request", "HX-History-Restore-Request"))
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


@bp.route("/authenticators/statuses")
@domain_management_required
def statuses():
    """Send the status cells that changed since the pane last asked, and ask again later."""
    ids = [int(part) for part in request.args.get("ids", "").split(",") if part.isdigit()][:500]
    since = request.args.get("since", type=_parse_time) or utcnow()
    asked_at = utcnow()
    # Overlap the last poll: a change stamped just before it may have committed just after.
    changed = status_changes(current_domain().id, ids, since - POLL_OVERLAP)
    return render_template("pane/_status_poller.html", ids=ids, since=asked_at, changed=changed)


def _parse_time(text):
    return datetime.fromisoformat(text)


@bp.route("/authenticators/<int:authenticator_id>/test", methods=["GET"])
@domain_management_required
def test_panel(authenticator_id):
    """Show the Test form, filled in with the last test's request."""
    authenticator = get_authenticator(authenticator_id)
    form = TestRequestForm(
        http_method=authenticator.test_method or "GET",
        url=authenticator.test_url,
        headers=authenticator.test_headers,
        body=authenticator.test_body,
    )
    template = "pane/_test_panel.html" if is_htmx() else "pane/test.html"
    return render_template(template, authenticator=authenticator, test_form=form)


@bp.route("/authenticators/test", methods=["POST"])
@bp.route("/authenticators/<int:authenticator_id>/test", methods=["POST"])
@domain_management_required
def test(authenticator_id=None):
    """Test an authenticator with one request: saved values from the pane, typed ones from the editor."""
    authenticator = get_authenticator(authenticator_id) if authenticator_id else None
    editor_form = None
    if "method" in request.form:
        editor_form = build_form(request.form["method"], authenticator, formdata=request.form)
        config = engine_config(authenticator, editor_form.values(), editor_form.secrets())
    else:
        if authenticator is None:
            return render_template("pane/_test_result.html", problems=["Nothing to test."]), 422
        config = engine_config(authenticator)
    test_form = TestRequestForm(request.form, url_optional=_token_grant(config))
    problems = _problems(editor_form, test_form)
    if problems:
        return _test_result(authenticator, test_form, problems=problems, status=422)
    outcome, recorded = run_authenticator_test(authenticator, test_form.test_request(), config)
    return _test_result(
        authenticator, test_form, outcome=outcome,
        tested=None if recorded else sign_tested_result(config, *status_of(outcome, config)),
    )


def _token_grant(config):
    """Tell whether a test may skip the URL: for OAuth, holding a usable token is a test too."""
    return config.method == "oauth2"


def _problems(editor_form, test_form):
    """Return what stops a test from running, as messages."""
    problems = []
    if editor_form is not None and not editor_form.validate():
        problems += [f"{editor_form[name].label.text}: {errors[0]}" for name, errors in _flat_errors(editor_form)]
    if not test_form.validate():
        problems += [f"{test_form[name].label.text}: {errors[0]}" for name, errors in test_form.errors.items()]
    return problems


def _flat_errors(form):
    for name, errors in form.errors.items():
        if isinstance(errors, list) and errors and isinstance(errors[0], str):
            yield name, errors
        else:
            yield name, ["check the rows of this list"]


def _test_result(authenticator, test_form, status=200, **context):
    return (
        render_template("pane/_test_result.html", authenticator=authenticator, test_form=test_form,
                        origin=request.form.get("origin", "pane"), **context),
        status,
    )
