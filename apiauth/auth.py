"""Sign-in and sign-out, switching domains, and the health check."""

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select, text
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired

from .access import domain_management_required, switch_domain
from .extensions import db, login_manager
from .models import User

bp = Blueprint("auth", __name__)


class SignInForm(FlaskForm):
    username = StringField("User name", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])


def init_app(app):
    """Tell flask-login how to find users and where to send anonymous visitors."""
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"


@login_manager.user_loader
def load_user(user_id):
    """Return the user of a session, or None."""
    return db.session.get(User, int(user_id))


def safe_next(target):
    """Return target if it is a path of this app (under its prefix, if any), else the pane."""
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and target.startswith(request.script_root + "/") and "\\" not in target:
        return target
    return url_for("pane.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign a user in with user name and password."""
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data))
        if user is not None and user.check_password(form.password.data):
            session.clear()
            login_user(user)
            return redirect(safe_next(request.args.get("next")))
        error = "Wrong user name or password."
    return render_template("login.html", form=form, error=error), 401 if error else 200


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign the current user out."""
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/domains/switch", methods=["POST"])
@domain_management_required
def switch():
    """Make another domain the current one."""
    domain = switch_domain(request.form.get("domain_id", type=int))
    flash(f"You are now working in domain {domain.name}.")
    return redirect(url_for("pane.index"))


@bp.route("/health")
def health():
    """Answer whether the app and its database work."""
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}


@bp.route("/livez")
def livez():
    """Answer that the process serves requests, without touching the database."""
    return {"status": "ok"}


@bp.route("/")
@domain_management_required
def root():
    """Send visitors to the pane of the current domain."""
    return redirect(url_for("pane.index"))
