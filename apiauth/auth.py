"""Sign-in and sign-out, server-side sessions, switching domains, and the health check."""

import functools
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import delete, select, text
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired

from . import throttle
from .access import domain_management_required, switch_domain
from .audit.events import record_event
from .extensions import db, login_manager
from .models import User, UserSession, utcnow

bp = Blueprint("auth", __name__)
# The session cookie's key for the random value whose digest names the UserSession row.
SESSION_KEY = "session_key"


def clock():
    """Return the current time; tests replace it to move time on without waiting."""
    return utcnow()


class SignInForm(FlaskForm):
    username = StringField("User name", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])


def init_app(app):
    """Tell flask-login how to find users and where to send anonymous visitors."""
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"


def _digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def _session_lifetime():
    return timedelta(hours=current_app.config["SESSION_HOURS"])


def record_user_event(user, action, detail=""):
    """Record an event about a user in each domain they belong to (in none: on every domain's page)."""
    for domain_id in [m.domain_id for m in user.memberships] or [None]:
        record_event(action, user.username, domain_id=domain_id, detail=detail)


def start_session(user):
    """Sign a user in: a fresh session, nothing carried over, backed by a row that sign-out deletes.

    Every way of signing in goes through here (and out through end_session), audited.
    """
    session.clear()
    key = secrets.token_urlsafe(32)
    now = clock()
    db.session.execute(delete(UserSession).where(UserSession.created_at <= now - _session_lifetime()))
    db.session.add(UserSession(id=_digest(key), user_id=user.id, created_at=now))
    record_user_event(user, "signed in")
    db.session.commit()
    session[SESSION_KEY] = key
    login_user(user)


def end_session():
    """Sign the current user out and delete the session's row: a copy of the cookie is refused from now on."""
    if current_user.is_authenticated:
        record_user_event(current_user, "signed out")
    key = session.get(SESSION_KEY)
    if key:
        db.session.execute(delete(UserSession).where(UserSession.id == _digest(key)))
    db.session.commit()
    logout_user()
    session.clear()


@login_manager.user_loader
def load_user(user_id):
    """Return the user of a session whose row still exists and has not outlived SESSION_HOURS, or None."""
    key = session.get(SESSION_KEY)
    if not key:
        return None
    return db.session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(
            UserSession.id == _digest(key),
            UserSession.user_id == int(user_id),
            UserSession.created_at > clock() - _session_lifetime(),
        )
    )


@functools.cache
def _decoy_hash():
    """A password hash to check when no user has the typed name, made once per process."""
    return generate_password_hash(secrets.token_urlsafe(16))


def password_matches(user, password):
    """Check a password; an unknown user name or a user without a password costs the same hashing.

    Answering those faster would tell a guesser which user names exist.
    """
    if user is None or not user.password_hash:
        check_password_hash(_decoy_hash(), password)
        return False
    return user.check_password(password)


def safe_next(target):
    """Return target if it is a path of this app (under its prefix, if any), else the pane."""
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and target.startswith(request.script_root + "/") and "\\" not in target:
        return target
    return url_for("pane.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign a user in with user name and password, refusing guesses beyond the throttle's limits."""
    form = SignInForm()
    if not form.validate_on_submit():
        return render_template("login.html", form=form)
    attempt, refusal = throttle.begin_attempt(form.username.data, request.remote_addr, clock())
    if refusal is not None:
        headers = {"Retry-After": str(refusal.retry_after_seconds)}
        return render_template("login.html", form=form, error=refusal.message), 429, headers
    user = db.session.scalar(select(User).where(User.username == form.username.data))
    if password_matches(user, form.password.data):
        throttle.clear_failures(attempt)
        start_session(user)
        return redirect(safe_next(request.args.get("next")))
    if user is None:
        # Not the name typed: people type passwords into that field.
        record_event("sign-in failed", "", detail="unknown user name")
    else:
        record_user_event(user, "sign-in failed", "wrong password")
    db.session.commit()
    return render_template("login.html", form=form, error="Wrong user name or password."), 401


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign the current user out."""
    end_session()
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
