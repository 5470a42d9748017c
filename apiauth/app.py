"""The Flask application factory: settings, extensions, blueprints, commands."""

from pathlib import Path

from flask import Flask, abort, g, render_template, request, url_for

from .config import load_settings
from .extensions import csrf, db, login_manager, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An id no authenticator has, replaced in URL patterns built once per request.
URL_PLACEHOLDER_ID = 987654321987


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
        db.session.rollback()
        if is_api_request():
            return http_error_response(error)
        code = getattr(error, "code", 500) or 500
        return render_template("error.html", code=code, error=error), code

    for code in (400, 401, 403, 404, 405, 409, 500):
        app.register_error_handler(code, error_page)


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
