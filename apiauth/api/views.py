"""The JSON API: authenticators of the token's domain, their credentials, reports and relayed calls."""

from datetime import UTC

from flask import Blueprint, jsonify, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from ..authentication import run_authenticator_test
from ..consumers import CACHED_COLUMNS, ConsumerError, cached_credentials, credentials, relay, report
from ..extensions import db
from ..models import Authenticator, Domain
from ..service_tokens import token_actor
from ..services import EditConflict, create_authenticator, delete_authenticator, update_authenticator
from . import URL_PREFIX
from .bodies import (
    TEXT_MESSAGE,
    authenticator_form,
    configuration,
    is_text,
    json_object,
    secrets_set,
    test_request_form,
)
from .errors import ApiError, ValidationFailed, error_response, http_error_response
from ..models import LARGEST_ID
from .gate import current_service_token, get_authenticator, read_reached, service_token_required
from .openapi import openapi_document

bp = Blueprint("api", __name__, url_prefix=URL_PREFIX)
PAGE_SIZE, LARGEST_PAGE = 100, 500
# Longer than any token lives: asking for more validity than this is a mistake.
LONGEST_MIN_VALIDITY = 86400


@bp.after_request
def no_store(response):
    """Keep credentials and configuration out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(ApiError)
def api_error(error):
    """Answer an API error as JSON."""
    db.session.rollback()
    return error_response(error)


@bp.errorhandler(HTTPException)
def http_error(error):
    """Answer the HTTP errors that the app's error pages don't cover as JSON too."""
    db.session.rollback()
    return http_error_response(error)


@bp.errorhandler(ConsumerError)
def consumer_error(error):
    """Answer a failed use as JSON, with the reason when there is one."""
    details = {"reason": error.reason} if error.reason else {}
    return error_response(ApiError(error.status, error.code, error.message, **details))


@bp.route("/openapi.json")
def openapi():
    """Describe the API as an OpenAPI 3.1 document."""
    return openapi_document(url_for(".openapi").removesuffix("/openapi.json"))


@bp.route("/authenticators")
@service_token_required("use")
def list_authenticators():
    """List the authenticators the token reaches, by id, a page at a time."""
    token = current_service_token()
    after, limit, name = _list_arguments()
    query = select(Authenticator).where(Authenticator.domain_id == token.domain_id, Authenticator.id > after)
    if token.authenticators:
        query = query.where(Authenticator.id.in_([a.id for a in token.authenticators]))
    if name is not None:
        query = query.where(Authenticator.name_key == name.casefold())
    page = db.session.scalars(query.order_by(Authenticator.id).limit(limit + 1)).all()
    more = len(page) > limit
    page = page[:limit]
    next_url = url_for(".list_authenticators", after=page[-1].id, limit=limit, name=name) if more else None
    return {"authenticators": [authenticator_json(a) for a in page], "next": next_url}


def _list_arguments():
    after, limit = _query_number("after", 0), _query_number("limit", PAGE_SIZE)
    problems = {}
    if after is None:
        problems["after"] = ["Send the id after which the page starts, a whole number."]
    if limit is None or not 1 <= limit <= LARGEST_PAGE:
        problems["limit"] = [f"Send a page size from 1 to {LARGEST_PAGE}."]
    name = request.args.get("name")
    if name is not None and not is_text(name):
        problems["name"] = [TEXT_MESSAGE]
    if problems:
        raise ValidationFailed(problems)
    return min(after, LARGEST_ID), limit, name


def _query_number(name, default):
    text = request.args.get(name, str(default))
    return int(text) if text.isascii() and text.isdigit() else None


@bp.route("/authenticators", methods=["POST"])
@service_token_required("manage")
def create():
    """Create an authenticator from the fields of the editor's form."""
    token = current_service_token()
    if token.authenticators:
        raise ApiError(403, "forbidden", "This service token is limited to some authenticators: it may not create others.")
    form = authenticator_form(token.domain_id, json_object())
    domain = db.session.get(Domain, token.domain_id)
    authenticator = create_authenticator(domain, token_actor(token), form.values(), form.secrets())
    response = jsonify(authenticator_json(authenticator))
    response.status_code = 201
    response.headers["Location"] = url_for(".show", authenticator_id=authenticator.id)
    return response


@bp.route("/authenticators/<int:authenticator_id>")
@service_token_required("use")
def show(authenticator_id):
    """Show an authenticator's configuration, without secrets, and its status."""
    return authenticator_json(get_authenticator(authenticator_id))


@bp.route("/authenticators/<int:authenticator_id>", methods=["PATCH"])
@service_token_required("manage")
def update(authenticator_id):
    """Change the fields sent, unless the authenticator changed since the version sent."""
    authenticator = get_authenticator(authenticator_id)
    body = json_object()
    version = body.pop("version", None)
    if not _whole_number(version, 1):
        raise ValidationFailed({"version": ["Send the version you read, a whole number."]})
    if version != authenticator.version:
        raise _conflict(authenticator)
    form = authenticator_form(authenticator.domain_id, body, authenticator)
    actor = token_actor(current_service_token())
    try:
        update_authenticator(authenticator, actor, form.values(), form.secrets(), version)
    except EditConflict:
        raise _conflict(authenticator) from None
    return authenticator_json(authenticator)


def _conflict(authenticator):
    return ApiError(
        409, "conflict", "The authenticator changed since this version: read it again and resend your change.",
        version=authenticator.version,
    )


@bp.route("/authenticators/<int:authenticator_id>", methods=["DELETE"])
@service_token_required("manage")
def delete(authenticator_id):
    """Delete an authenticator; its history stays in the audit log."""
    delete_authenticator(get_authenticator(authenticator_id), token_actor(current_service_token()))
    return "", 204


@bp.route("/authenticators/<int:authenticator_id>/test", methods=["POST"])
@service_token_required("manage")
def test(authenticator_id):
    """Try the saved credentials on one request and record the status."""
    authenticator = get_authenticator(authenticator_id)
    # For OAuth, getting a token is a test in itself, as in the Test form.
    form = test_request_form(json_object(), url_optional=authenticator.method == "oauth2")
    outcome, _ = run_authenticator_test(authenticator, form.test_request())
    return {
        "succeeded": outcome.succeeded,
        "reason": outcome.reason,
        "status_code": outcome.status_code,
        "response_headers": [[name, value] for name, value in outcome.response_headers],
        "response_body": outcome.response_body,
        "body_truncated": outcome.body_truncated,
        "log": outcome.log,
        "status": authenticator.status,
        "status_reason": authenticator.status_reason,
    }


def _cached_credentials(scope, authenticator_id):
    """Answer the common credentials call from one read (consumers.cached_credentials), or None."""
    try:
        min_validity = _min_validity()
    except ApiError:
        return None  # the full path answers, after the gate
    row = read_reached(scope, authenticator_id, CACHED_COLUMNS)
    return None if row is None else cached_credentials(row, min_validity)


@bp.route("/authenticators/<int:authenticator_id>/credentials", methods=["POST"])
@service_token_required("use", fast_path=_cached_credentials)
def get_credentials(authenticator_id):
    """Return the headers and query parameters to add to a call, valid for at least min_validity seconds."""
    authenticator = get_authenticator(authenticator_id)
    return credentials(authenticator, current_service_token().name, _min_validity())


def _min_validity():
    """Return the body's min_validity, or raise ValidationFailed."""
    body = json_object(required=False)
    problems = _unknown_fields(body, ("min_validity",))
    min_validity = body.get("min_validity", 0)
    if type(min_validity) not in (int, float) or not 0 <= min_validity <= LONGEST_MIN_VALIDITY:
        problems["min_validity"] = [f"Send the seconds the credentials must stay valid, from 0 to {LONGEST_MIN_VALIDITY}."]
    if problems:
        raise ValidationFailed(problems)
    return min_validity


@bp.route("/authenticators/<int:authenticator_id>/report", methods=["POST"])
@service_token_required("use")
def report_result(authenticator_id):
    """Take a consumer's word on how the API answered a call made with the credentials."""
    authenticator = get_authenticator(authenticator_id)
    body = json_object()
    problems = _unknown_fields(body, ("status_code", "generation"))
    status_code, generation = body.get("status_code"), body.get("generation")
    if not _whole_number(status_code, 100, 599):
        problems["status_code"] = ["Send the HTTP status code the API answered, from 100 to 599."]
    if generation is not None and not _whole_number(generation, 0, LARGEST_ID):
        problems["generation"] = ["Send the generation the credentials came with, a whole number."]
    if problems:
        raise ValidationFailed(problems)
    return report(authenticator, current_service_token().name, status_code, generation)


def _unknown_fields(body, known):
    return {name: ["Not a field of this request."] for name in body if name not in known}


def _whole_number(value, lowest, highest=None):
    # bool is an int to Python, not to JSON.
    return type(value) is int and value >= lowest and (highest is None or value <= highest)


@bp.route("/authenticators/<int:authenticator_id>/relay", methods=["POST"])
@service_token_required("use")
def relay_call(authenticator_id):
    """Send a request to an allowed host with the credentials added, and return the response."""
    authenticator = get_authenticator(authenticator_id)
    call = test_request_form(json_object()).test_request()
    return relay(authenticator, current_service_token().name, call.method, call.url, call.headers, call.body)


def authenticator_json(authenticator):
    """Return an authenticator as the API shows it: configuration, which secrets are set, status."""
    return {
        "id": authenticator.id,
        **configuration(authenticator),
        "secrets_set": secrets_set(authenticator),
        "status": authenticator.status,
        "status_reason": authenticator.status_reason,
        "status_updated_at": _time(authenticator.status_updated_at),
        "last_consumer": authenticator.last_consumer,
        "last_used_at": _time(authenticator.last_used_at),
        "version": authenticator.version,
        "created_at": _time(authenticator.created_at),
        "modified_at": _time(authenticator.modified_at),
        "modified_by": authenticator.modified_by_name,
    }


def _time(value):
    """Format a stored UTC time as RFC 3339, or None."""
    return value.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else None

