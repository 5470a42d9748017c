"""Errors of the JSON API: a stable code, a message for people, never an HTML page or a secret."""

from flask import jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

# The stable `error` code of each HTTP status the API may answer with.
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    500: "internal_error",
}
MESSAGES = {
    400: "The request could not be understood.",
    401: "Send a valid service token as Authorization: Bearer <token>.",
    403: "This service token may not do this.",
    404: "There is nothing here, or it belongs to another domain.",
    405: "This URL does not accept this HTTP method.",
    413: "The request body is too large.",
    500: "Something went wrong. Nothing was saved. Try again in a moment.",
}


class ApiError(Exception):
    """An answer of the API that is an error: HTTP status, stable code, message, details."""

    def __init__(self, status, code, message, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class ValidationFailed(ApiError):
    """Fields that fail validation, each with its messages, keyed by their JSON name."""

    def __init__(self, fields):
        super().__init__(422, "validation_failed", "Some fields need attention. Nothing was saved.", fields=fields)


def error_response(error):
    """Render an ApiError as JSON."""
    response = jsonify({"error": error.code, "message": error.message, **error.details})
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="apiauth"'
    return response


def http_error_response(error):
    """Render an HTTP error (from routing, abort or an unhandled exception) as JSON."""
    status = error.code if isinstance(error, HTTPException) and error.code else 500
    code = ERROR_CODES.get(status, f"http_{status}")
    message = MESSAGES.get(status, "The request could not be handled.")
    response = error_response(ApiError(status, code, message))
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response
