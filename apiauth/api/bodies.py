"""JSON bodies of the API, read into the editor's forms: one validation, one set of messages."""

from flask import request
from werkzeug.datastructures import MultiDict

from ..editor.forms import FORMS, TestRequestForm
from ..models import METHODS, SECRET_FIELDS
from ..services import name_taken
from .errors import ApiError, ValidationFailed

COMMON_FIELDS = ("name", "description", "method", "conditions", "allowed_hosts")
METHOD_FIELDS = {
    "api_key": ("key", "add_to"),
    "basic": ("username",),
    "oauth2": (
        "grant_type", "access_token_url", "auth_url", "client_id", "client_authentication", "scope",
        "username", "code_challenge_method", "audience", "resource", "extra_params", "token_prefix",
    ),
}
# Lists of objects, sent to the form as its numbered sub-forms.
ROW_FIELDS = {"conditions": ("source", "name", "operator", "value"), "extra_params": ("target", "name", "value")}
READ_ONLY_FIELDS = (
    "id", "secrets_set", "status", "status_reason", "status_updated_at", "last_consumer", "last_used_at",
    "created_at", "modified_at", "modified_by", "version",
)
TEST_REQUEST_FIELDS = ("method", "url", "headers", "body")
TEXT_MESSAGE = "Send text: a string of valid Unicode without NUL characters."
# The API's names for fields the forms name otherwise.
FORM_NAMES = {"method": "http_method"}


def json_object(required=True):
    """Return the request body as a JSON object; {} for an empty body unless one is required."""
    if not request.get_data(cache=True) and not required:
        return {}
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Send a JSON object as the request body.")
    return body


def configuration(authenticator):
    """Return the configuration of an authenticator under its API names, without secrets."""
    return {field: getattr(authenticator, field) for field in _writable(authenticator.method) if field not in SECRET_FIELDS}


def secrets_set(authenticator):
    """Name the secret fields of an authenticator's method that hold a value."""
    return [field for field in FORMS[authenticator.method].secret_fields if authenticator.has_secret(field)]


def authenticator_form(domain_id, body, authenticator=None):
    """Validate a create (no authenticator) or a change (over the authenticator's values) with the editor's form.

    Raises ValidationFailed with the form's messages under the API's field names.
    """
    method = body.get("method", authenticator.method if authenticator else None)
    if not isinstance(method, str) or method not in METHODS:
        raise ValidationFailed({"method": [f"Choose one of: {', '.join(METHODS)}."]})
    problems = _shape_problems(body, _writable(method), f"Not a field of method {method}.")
    if problems:
        raise ValidationFailed(problems)
    values = {**configuration(authenticator), **body} if authenticator else body
    except_id = authenticator.id if authenticator else None
    form = FORMS[method](
        formdata=_form_data(values),
        stored_secrets=secrets_set(authenticator) if authenticator else (),
        name_taken=lambda name: name_taken(domain_id, name, except_id),
        meta={"csrf": False},
    )
    form.method.data = method
    if not form.validate():
        raise ValidationFailed(field_errors(form))
    return form


def test_request_form(body, url_optional=False):
    """Validate an HTTP request to send, {method, url, headers, body}, with the Test form."""
    problems = _shape_problems(body, TEST_REQUEST_FIELDS, "Not a field of a request.")
    if problems:
        raise ValidationFailed(problems)
    lines = "\n".join(f"{name}: {value}" for name, value in _header_pairs(body.get("headers", [])))
    values = {FORM_NAMES.get(name, name): value for name, value in body.items() if name not in ("headers", "body")}
    values.update(headers=lines, body=body.get("body") or "")
    form = TestRequestForm(_form_data(values), url_optional=url_optional)
    if not form.validate():
        raise ValidationFailed(field_errors(form))
    return form


def field_errors(form):
    """Return a form's errors keyed by API field names; rows as name[index].field."""
    api_names = {form_name: api_name for api_name, form_name in FORM_NAMES.items()}
    errors = {}
    for field in form:
        name = api_names.get(field.name, field.name)
        if field.name in ROW_FIELDS:
            for index, entry in enumerate(field.entries):
                for part in entry.form:
                    if part.errors:
                        errors[f"{name}[{index}].{part.short_name}"] = list(part.errors)
        elif field.errors:
            errors[name] = list(field.errors)
    return errors


def _writable(method):
    return COMMON_FIELDS + METHOD_FIELDS[method] + FORMS[method].secret_fields


def _shape_problems(body, allowed, unknown_message):
    """Check that a body holds only allowed fields, each of its JSON type; return messages per field."""
    problems = {}
    for name, value in body.items():
        if name not in allowed:
            problems[name] = ["This field is read-only." if name in READ_ONLY_FIELDS else unknown_message]
        elif name in ROW_FIELDS:
            problems.update(_row_problems(name, value))
        elif name == "allowed_hosts":
            if not (isinstance(value, list) and all(is_text(host) for host in value)):
                problems[name] = ["Send a list of host names."]
        elif name == "headers":
            if _header_pairs(value) is None:
                problems[name] = ["Send [[name, value], ...] or {name: value}, each a single line, names without colons."]
        elif name == "body" and value is None:
            continue
        elif not is_text(value):
            problems[name] = [TEXT_MESSAGE]
    return problems


def is_text(value):
    """Tell whether a JSON value is text that a database column can hold: no NUL, no lone surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _row_problems(name, rows):
    parts = ROW_FIELDS[name]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return {name: [f"Send a list of objects with the fields {', '.join(parts)}."]}
    problems = {}
    for index, row in enumerate(rows):
        for part, value in row.items():
            if part not in parts:
                problems[f"{name}[{index}].{part}"] = [f"Not a field of {name}."]
            elif not is_text(value):
                problems[f"{name}[{index}].{part}"] = [TEXT_MESSAGE]
    return problems


def _header_pairs(headers):
    """Return headers sent as [[name, value], ...] or as {name: value} as pairs; None if they are neither."""
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    if not isinstance(pairs, list) or not all(_is_header(pair) for pair in pairs):
        return None
    return [tuple(pair) for pair in pairs]


def _is_header(pair):
    return (
        isinstance(pair, list | tuple)
        and len(pair) == 2
        and all(is_text(part) and "\n" not in part and "\r" not in part for part in pair)
        and ":" not in pair[0]
    )


def _form_data(values):
    """Flatten JSON values into the form data that the editor's page would post."""
    data = MultiDict()
    for name, value in values.items():
        if name in ROW_FIELDS:
            # Every part, so that a row missing one still reaches the form and its messages.
            for index, row in enumerate(value):
                for part in ROW_FIELDS[name]:
                    data.add(f"{name}-{index}-{part}", row.get(part, ""))
        elif name == "allowed_hosts":
            data.add(name, "\n".join(value))
        else:
            data.add(name, value)
    return data
