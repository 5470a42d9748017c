"""Login and its callback, and Disconnect, for authorization-code grants."""

import logging
import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import domain_management_required, get_authenticator
from ..auth import safe_next
from ..extensions import db
from ..logins import (
    LoginRefused,
    begin_login,
    claim_attempt,
    complete_login,
    disconnect,
)
from ..models import Authenticator
from ..portal import is_portal_page
from . import callback_url

bp = Blueprint("oauth", __name__)


class CallbackQueryFilter(logging.Filter):
    """Keep authorization codes and states out of access logs."""

    pattern = re.compile(r"(/oauth/callback)\?\S*")

    def filter(self, record):
        if isinstance(record.msg, str) and "/oauth/callback" in record.getMessage():
            record.msg, record.args = self.pattern.sub(r"\1?[redacted]", record.getMessage()), ()
        return True


def init_app(app):
    """Scrub callback URLs from the access log of the development server."""
    logging.getLogger("werkzeug").addFilter(CallbackQueryFilter())


@bp.after_request
def no_referrer_no_store(response):
    """Let no code or state leave through a Referer header or a cache."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/oauth/login/<int:authenticator_id>")
@domain_management_required
def login(authenticator_id):
    """Send the user to the provider to log in for an authenticator."""
    authenticator = get_authenticator(authenticator_id)
    if not authenticator.uses_login:
        abort(400, "This authenticator does not use Login: only authorization-code grants do.")
    return_to = login_return_to(request.args.get("next"))
    popup = request.args.get("popup") == "1"
    return redirect(begin_login(authenticator, current_user, callback_url(), popup, return_to))


def login_return_to(target):
    """Return where the Login ends: the portal page that frames the UI, or a path of this app."""
    return target if is_portal_page(target) else safe_next(target)


@bp.route("/oauth/callback")
def callback():
    """Complete a Login when the provider sends the user back."""
    if not current_user.is_authenticated:
        return _refused("You are not signed in to apiauth any more. Sign in and start the Login again.")
    try:
        attempt = claim_attempt(request.args, current_user)
    except LoginRefused as refusal:
        return _refused(refusal.message)
    authenticator = get_authenticator_for_login(attempt)
    result = complete_login(attempt, request.args, current_user)
    if result.popup:
        return render_template("oauth/callback.html", result=result, authenticator=authenticator)
    if result.succeeded:
        flash(f"“{authenticator.name}” is connected.")
    else:
        flash(f"Login to “{authenticator.name}” failed: {result.reason}.")
    return redirect(result.return_to or url_for("pane.index"), code=303)


def get_authenticator_for_login(attempt):
    """Return the attempt's authenticator, if the user still manages its domain."""
    authenticator = db.session.get(Authenticator, attempt.authenticator_id)
    if authenticator is None or not current_user.manages(authenticator.domain_id):
        abort(403)
    return authenticator


def _refused(message):
    return render_template("oauth/refused.html", message=message), 400


@bp.route("/oauth/disconnect/<int:authenticator_id>", methods=["POST"])
@domain_management_required
def disconnect_view(authenticator_id):
    """Forget an authenticator's tokens, revoking them at the provider when it can."""
    authenticator = get_authenticator(authenticator_id)
    disconnect(authenticator, current_user)
    flash(f"“{authenticator.name}” is disconnected: it needs a Login again.")
    return redirect(safe_next(request.form.get("next")), code=303)
