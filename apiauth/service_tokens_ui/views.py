"""List, create and revoke the service tokens of the current domain."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import RadioField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from ..access import current_domain, domain_management_required
from ..editor.forms import LineListField, choices
from ..models import SERVICE_TOKEN_SCOPES
from ..service_tokens import (
    authenticators_named,
    create_service_token,
    domain_tokens,
    get_domain_token,
    revoke_service_token,
    token_name_taken,
)

bp = Blueprint("service_tokens", __name__)


class ServiceTokenForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired("Name the token after the service that uses it."), Length(max=100)],
        filters=[lambda value: value.strip() if value else value],
    )
    scope = RadioField("Scope", choices=choices(SERVICE_TOKEN_SCOPES), default="use")
    authenticators = LineListField(
        "Limit to authenticators", description="Names, one per line. Empty: every authenticator of the domain."
    )

    def __init__(self, *args, domain_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.domain_id = domain_id
        self.limited_to = []

    def validate_name(self, field):
        if field.data and token_name_taken(self.domain_id, field.data):
            raise ValidationError("Another service token of this domain has this name, perhaps a revoked one.")

    def validate_authenticators(self, field):
        self.limited_to, missing = authenticators_named(self.domain_id, field.data or [])
        if missing:
            raise ValidationError(f"No authenticator in this domain is named {', '.join(f'“{n}”' for n in missing)}.")


def _page(form, status=200):
    return render_template("service_tokens/index.html", form=form, tokens=domain_tokens(current_domain().id)), status


@bp.route("/service-tokens")
@domain_management_required
def index():
    """List the domain's service tokens, with the form for a new one."""
    return _page(ServiceTokenForm(domain_id=current_domain().id))


@bp.route("/service-tokens", methods=["POST"])
@domain_management_required
def create():
    """Create a service token and show it, this once."""
    domain = current_domain()
    form = ServiceTokenForm(domain_id=domain.id)
    if not form.validate():
        return _page(form, 422)
    token, plain = create_service_token(
        domain, form.name.data, form.scope.data, form.limited_to, created_by=current_user.username
    )
    page = render_template("service_tokens/created.html", token=token, plain=plain)
    # Shown once: no cache may keep it.
    return page, 200, {"Cache-Control": "no-store"}


@bp.route("/service-tokens/<int:token_id>/revoke", methods=["GET", "POST"])
@domain_management_required
def revoke(token_id):
    """Ask to confirm, then revoke a service token."""
    token = get_domain_token(current_domain().id, token_id)
    if token is None:
        abort(404)
    if request.method == "GET":
        return render_template("service_tokens/confirm_revoke.html", token=token)
    revoke_service_token(token, current_user.username)
    flash(f"Service token “{token.name}” revoked. Calls with it now answer 401.")
    return redirect(url_for("service_tokens.index"))
