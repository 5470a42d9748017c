"""The Flask application factory: settings, extensions, blueprints, commands."""

from pathlib import Path

from flask import Flask, abort, current_app, g, has_request_context, render_template, request, url_for
from sqlalchemy.exc import DBAPIError, OperationalError

from .config import load_settings
from .extensions import csrf, db, login_manager, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An id no authenticator has, replaced in URL patterns built once per request.
URL_PLACEHOLDER_ID = 987654321987
# What a 503 tells clients to wait before trying again while the database is unreachable.
RETRY_AFTER_SECONDS = "5"
DATABASE_UNAVAILABLE = "The database cannot be reached right now. Nothing was saved. Try again in a moment."


def create_app(config=None):
    """Create the Flask app: settings, extensions, blueprints and commands."""
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    overrides = dict(config or {})
    app.instance_path = overrides.pop("INSTANCE_PATH", app.instance_path)
    app.config.update(load_settings(app.instance_path))
    app.config.update(overrides)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)

    from . import auth, cli, keys, portal
    from .api import views as api
    from .audit import views as audit
    from .editor import views as editor
    from .oauth import views as oauth
    from .pane import views as pane
    from .service_tokens_ui import views as service_tokens

    keys.init_app(app)
    auth.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pane.bp)
    app.register_blueprint(editor.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(service_tokens.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(api.bp)
    # The API authenticates each call by its bearer token, never by a cookie: no CSRF to forge.
    csrf.exempt(api.bp)
    oauth.init_app(app)
    portal.init_app(app)
    cli.init_app(app)
    _register_error_pages(app)
    _register_template_helpers(app)
    app.before_request(refuse_nul_characters)
    return app


def refuse_nul_characters():
    """Refuse form fields with a NUL character: no database stores it (PostgreSQL fails on it)."""
    values = [*request.args.values(), *(request.form.values() if request.method == "POST" else ())]
    if any("\x00" in value for value in values):
        abort(400, "A field contains a NUL character, which cannot be stored. Remove it and try again.")


def _register_error_pages(app):
    """Render errors as pages of our own (JSON in the API), rolling back a failed transaction."""
    from .api import is_api_request
    from .api.errors import http_error_response

    def error_page(error):
        _roll_back()
        if is_api_request():
            return http_error_response(error)
        code = getattr(error, "code", 500) or 500
        return render_template("error.html", code=code, error=error), code

    for code in (400, 401, 403, 404, 405, 409, 500):
        app.register_error_handler(code, error_page)
    app.register_error_handler(DBAPIError, database_unavailable)
    # Registered after flask-sqlalchemy's teardown, so it runs before it and leaves it nothing to do.
    app.teardown_appcontext(_close_session)


def is_outage(error):
    """Tell whether a database error means the database is out of reach, rather than a bug."""
    return isinstance(error, OperationalError) or error.connection_invalidated


def _log_outage(error):
    # One line, and only the driver's message: the statement's parameters may hold secrets.
    reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    current_app.logger.warning("Database unavailable (%s %s): %s", request.method, request.path, reason)


def _roll_back():
    """Roll the session back; a connection lost meanwhile took its transaction with it."""
    try:
        db.session.rollback()
    except DBAPIError as error:
        if not is_outage(error):
            raise


def _close_session(exception):
    """End the request's session, even when the database cut its connection after the answer was made."""
    try:
        db.session.close()
    except DBAPIError as error:
        if not is_outage(error):
            raise
        if has_request_context():
            _log_outage(error)
    finally:
        db.session.registry.clear()


def database_unavailable(error):
    """Answer 503 when the database cannot be reached, rolling back whatever the request began.

    Nothing was committed: the transaction dies with the connection. The pool's pre-ping
    (SQLALCHEMY_ENGINE_OPTIONS) reconnects once the database is back, without a restart.
    """
    if not is_outage(error):
        raise error  # a bug, not an outage: the 500 handler logs and answers it
    _roll_back()
    _log_outage(error)
    from .api import is_api_request
    from .api.errors import ApiError, error_response

    if is_api_request():
        response = error_response(ApiError(503, "database_unavailable", DATABASE_UNAVAILABLE))
    elif request.endpoint == "auth.health":
        # Monitoring reads JSON: the same shape as the health check's "ok".
        response = current_app.make_response(({"status": "database_unavailable"}, 503))
    else:
        # Render as nobody: flask-login's template context would look the user up in the database.
        login_manager._update_request_context_with_user()
        response = current_app.make_response((render_template("unavailable.html", message=DATABASE_UNAVAILABLE), 503))
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def _register_template_helpers(app):
    """Expose the current domain and the formatting helpers to every template."""
    from .access import current_domain, is_htmx
    from .models import utcnow

    @app.context_processor
    def inject_globals():
        return {"current_domain": current_domain, "is_htmx": is_htmx, "now": utcnow}

    @app.template_global()
    def authenticator_url(endpoint, authenticator_id):
        """Build an authenticator's URL: url_for once per endpoint and request, then a substitution."""
        patterns = g.setdefault("authenticator_url_patterns", {})
        if endpoint not in patterns:
            patterns[endpoint] = url_for(endpoint, authenticator_id=URL_PLACEHOLDER_ID)
        return patterns[endpoint].replace(str(URL_PLACEHOLDER_ID), str(authenticator_id), 1)

    @app.template_filter("timestamp")
    def timestamp(value):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"
