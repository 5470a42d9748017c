"""Create and edit authenticators, one form per method, with fields swapped by htmx."""

import time

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import current_domain, domain_management_required, get_authenticator
from ..authentication import keep_tested_result
from ..models import SECRET_FIELDS
from ..oauth import callback_url
from ..services import (
    EditConflict,
    create_authenticator,
    history,
    name_taken,
    update_authenticator,
)
from .forms import FORMS, ConditionForm, ExtraParamForm, TestRequestForm

bp = Blueprint("editor", __name__)


def _form_class(method):
    if method not in FORMS:
        abort(400, "Unknown method.")
    return FORMS[method]


def build_form(method, authenticator=None, formdata=None):
    """Build the form of a method, for a new or an existing authenticator."""
    domain_id = current_domain().id
    except_id = authenticator.id if authenticator else None
    stored = [f for f in SECRET_FIELDS if authenticator and authenticator.has_secret(f)]
    form = _form_class(method)(
        formdata=formdata,
        obj=authenticator,
        stored_secrets=stored,
        name_taken=lambda name: name_taken(domain_id, name, except_id),
    )
    form.method.data = method
    return form


def render_editor(form, authenticator=None, conflict=None, status=200):
    """Render the editor page around a form, with the Test form filled in from the last test."""
    test_form = TestRequestForm(
        http_method=authenticator.test_method if authenticator else "GET",
        url=authenticator.test_url if authenticator else "",
        headers=authenticator.test_headers if authenticator else "",
        body=authenticator.test_body if authenticator else "",
    )
    return (
        render_template(
            "editor/form.html",
            form=form,
            test_form=test_form,
            authenticator=authenticator,
            conflict=conflict,
            callback_url=callback_url(),
            events=history(authenticator) if authenticator else [],
        ),
        status,
    )


@bp.route("/authenticators/new")
@domain_management_required
def new():
    """Show an empty form for a method."""
    form = build_form(request.args.get("method", "api_key"))
    return render_editor(form)


@bp.route("/authenticators", methods=["POST"])
@domain_management_required
def create():
    """Create an authenticator from the submitted form."""
    form = build_form(request.form.get("method", ""), formdata=request.form)
    if not form.validate():
        return render_editor(form, status=422)
    authenticator = create_authenticator(current_domain(), current_user, form.values(), form.secrets())
    keep_tested_result(authenticator, request.form.get("tested_result"))
    return _saved(authenticator, "created")


@bp.route("/authenticators/<int:authenticator_id>/edit")
@domain_management_required
def edit(authenticator_id):
    """Show the form of an authenticator, with its history."""
    authenticator = get_authenticator(authenticator_id)
    return render_editor(build_form(authenticator.method, authenticator), authenticator)


@bp.route("/authenticators/<int:authenticator_id>", methods=["POST"])
@domain_management_required
def update(authenticator_id):
    """Save an edit, unless someone else saved since it was loaded."""
    authenticator = get_authenticator(authenticator_id)
    form = build_form(request.form.get("method", ""), authenticator, formdata=request.form)
    if not form.validate():
        return render_editor(form, authenticator, status=422)
    try:
        loaded_version = int(form.version.data)
    except (TypeError, ValueError):
        abort(400, "The form lacks its version.")
    try:
        update_authenticator(authenticator, current_user, form.values(), form.secrets(), loaded_version)
    except EditConflict as conflict:
        form.version.data = str(authenticator.version)
        return render_editor(form, authenticator, conflict=conflict, status=409)
    keep_tested_result(authenticator, request.form.get("tested_result"))
    return _saved(authenticator, "saved")


def _saved(authenticator, verb):
    """Show the saved authenticator's editor with a confirmation."""
    flash(f"Authenticator “{authenticator.name}” {verb}.")
    return redirect(url_for("editor.edit", authenticator_id=authenticator.id))


@bp.route("/authenticators/fields", methods=["POST"])
@bp.route("/authenticators/<int:authenticator_id>/fields", methods=["POST"])
@domain_management_required
def fields(authenticator_id=None):
    """Render the fields of the chosen method or grant, keeping what was typed."""
    authenticator = get_authenticator(authenticator_id) if authenticator_id else None
    form = build_form(request.form.get("method", ""), authenticator, formdata=request.form)
    part = "editor/_grant_fields.html" if request.args.get("part") == "grant" else "editor/_method_fields.html"
    return render_template(part, form=form, authenticator=authenticator, callback_url=callback_url())


@bp.route("/authenticators/conditions/new")
@domain_management_required
def new_condition():
    """Render one more failure condition row."""
    return _new_row(ConditionForm, "conditions", "editor/_condition_row.html")


@bp.route("/authenticators/extra-params/new")
@domain_management_required
def new_extra_param():
    """Render one more extra parameter row."""
    return _new_row(ExtraParamForm, "extra_params", "editor/_extra_param_row.html")


def _new_row(form_class, list_name, template):
    # Any increasing number will do: WTForms reads list entries in index order, gaps allowed.
    index = time.time_ns() // 1000
    row = form_class(prefix=f"{list_name}-{index}")
    return render_template(template, row=row, index=index)
