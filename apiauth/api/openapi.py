"""The OpenAPI 3.1 description of the JSON API, built from the same field lists the API reads."""

from ..editor.forms import (
    CLIENT_AUTHENTICATIONS,
    CONDITION_OPERATORS,
    CONDITION_SOURCES,
    FORMS,
    HTTP_METHODS,
    PARAM_TARGETS,
)
from ..models import GRANT_TYPES, METHODS, STATUSES
from .bodies import METHOD_FIELDS
from .errors import ERROR_CODES
from ..models import LARGEST_ID

TEXT = {"type": "string"}
TIME = {"type": ["string", "null"], "format": "date-time"}
ENUMS = {
    "add_to": ["header", "query"],
    "grant_type": list(GRANT_TYPES),
    "client_authentication": list(CLIENT_AUTHENTICATIONS),
    "code_challenge_method": ["S256", "plain"],
}
DESCRIPTIONS = {
    "key": "API Key: the header or query parameter name.",
    "value": "API Key: its value. Secret: write-only.",
    "username": "Basic Auth, and OAuth 2.0 with the password grant.",
    "password": "Basic Auth, and OAuth 2.0 with the password grant. Secret: write-only.",
    "client_secret": "Secret: write-only. Optional for a public client (client_authentication none).",
    "access_token_url": "An absolute http(s) URL.",
    "auth_url": "An absolute http(s) URL; authorization-code grants only, else empty.",
    "resource": "An absolute http(s) URL, or empty.",
    "allowed_hosts": "Hosts a service may call through the relay with these credentials. Empty: relay is off.",
    "conditions": "Authentication failed when any rule matches; with none, a status of 400 or more is a failure.",
}
READ_ONLY = {
    "id": {"type": "integer"},
    "secrets_set": {"type": "array", "items": {"enum": sorted({f for form in FORMS.values() for f in form.secret_fields})},
                    "description": "The secret fields that hold a value; secrets themselves are never shown."},
    "status": {"enum": list(STATUSES)},
    "status_reason": {**TEXT, "description": "Why the last authentication failed, e.g. invalid_client, timeout, http_401."},
    "status_updated_at": TIME,
    "last_consumer": {**TEXT, "description": "The service token (or other consumer) that used it last."},
    "last_used_at": TIME,
    "created_at": TIME,
    "modified_at": TIME,
    "modified_by": TEXT,
}
WRITE_STATUSES = (400, 401, 403, 422)
# Fields a new authenticator of each method cannot do without (the rest depends on other fields).
REQUIRED_TO_CREATE = {"api_key": ("key", "value"), "basic": ("username", "password"),
                      "oauth2": ("access_token_url", "client_id")}


def _field_schema(name):
    if name == "conditions":
        return {"type": "array", "items": {"$ref": "#/components/schemas/Condition"}, "description": DESCRIPTIONS[name]}
    if name == "extra_params":
        return {"type": "array", "items": {"$ref": "#/components/schemas/ExtraParam"}}
    if name == "allowed_hosts":
        return {"type": "array", "items": TEXT, "maxItems": 100, "description": DESCRIPTIONS[name]}
    if name == "method":
        return {"enum": list(METHODS)}
    if name == "name":
        return {"type": "string", "minLength": 1, "maxLength": 100}
    schema = {"enum": ENUMS[name]} if name in ENUMS else dict(TEXT)
    if name in DESCRIPTIONS:
        schema["description"] = DESCRIPTIONS[name]
    return schema


def _config_fields(method):
    return ("name", "description", "conditions", "allowed_hosts", *METHOD_FIELDS[method])


def _method_schema(method, shown):
    """Return the schema of one method's authenticator: as shown (with status), or as sent to create it."""
    properties = {"method": {"const": method}, **{name: _field_schema(name) for name in _config_fields(method)}}
    if shown:
        properties.update(READ_ONLY, version={"type": "integer"})
        required = list(properties)
    else:
        properties.update({name: {**_field_schema(name), "writeOnly": True} for name in FORMS[method].secret_fields})
        required = ["method", "name", *REQUIRED_TO_CREATE[method]]
    return {"title": f"{METHODS[method]} authenticator", "type": "object", "properties": properties,
            "required": required, "additionalProperties": False}


def _patch_schema():
    every_field = dict.fromkeys(
        ("name", "description", "method", "conditions", "allowed_hosts", *(f for m in METHOD_FIELDS for f in METHOD_FIELDS[m]))
    )
    properties = {name: _field_schema(name) for name in every_field}
    properties.update({name: {**TEXT, "writeOnly": True, "description": DESCRIPTIONS[name]}
                       for form in FORMS.values() for name in form.secret_fields})
    properties["version"] = {"type": "integer", "minimum": 1, "description": "The version you read; 409 if it changed since."}
    return {"type": "object", "properties": properties, "required": ["version"], "additionalProperties": False,
            "description": "The fields to change, of the authenticator's method (or of a new method). "
                           "Secrets left out keep their value."}


def _request_schema():
    return {
        "type": "object",
        "properties": {
            "method": {"enum": list(HTTP_METHODS)},
            "url": {**TEXT, "format": "uri"},
            "headers": {"oneOf": [{"type": "array", "items": {"$ref": "#/components/schemas/Header"}},
                                  {"type": "object", "additionalProperties": TEXT}]},
            "body": {"type": ["string", "null"]},
        },
        "additionalProperties": False,
    }


def _object(properties, required=None):
    return {"type": "object", "properties": properties, "required": required or list(properties),
            "additionalProperties": False}


def _schemas():
    return {
        "Authenticator": _one_of_methods(""),
        **{_name(m): _method_schema(m, shown=True) for m in METHODS},
        "AuthenticatorCreate": _one_of_methods("Create"),
        **{f"{_name(m)}Create": _method_schema(m, shown=False) for m in METHODS},
        "AuthenticatorPatch": _patch_schema(),
        "AuthenticatorList": _object({
            "authenticators": {"type": "array", "items": {"$ref": "#/components/schemas/Authenticator"}},
            "next": {"type": ["string", "null"], "description": "The URL of the next page, or null on the last."},
        }),
        "Condition": _object({"source": {"enum": list(CONDITION_SOURCES)}, "name": TEXT,
                              "operator": {"enum": list(CONDITION_OPERATORS)}, "value": TEXT},
                             required=["source", "operator", "value"]),
        "ExtraParam": _object({"target": {"enum": list(PARAM_TARGETS)}, "name": TEXT, "value": TEXT},
                              required=["target", "name"]),
        "Header": {"type": "array", "prefixItems": [TEXT, TEXT], "minItems": 2, "maxItems": 2,
                   "description": "[name, value]"},
        "Request": _request_schema(),
        "TestResult": _object({
            "succeeded": {"type": "boolean"},
            "reason": {"type": ["string", "null"]},
            "status_code": {"type": ["integer", "null"]},
            "response_headers": {"type": "array", "items": {"$ref": "#/components/schemas/Header"}},
            "response_body": {**TEXT, "description": "Credentials it echoes are masked."},
            "body_truncated": {"type": "boolean"},
            "log": {"type": "array", "items": TEXT},
            "status": {"enum": list(STATUSES)},
            "status_reason": TEXT,
        }),
        "CredentialsRequest": _object({"min_validity": {"type": "number", "minimum": 0, "maximum": 86400,
                                                        "description": "Seconds the credentials must stay valid."}},
                                      required=[]),
        "Credentials": _object({
            "headers": {"type": "object", "additionalProperties": TEXT},
            "query": {"type": "object", "additionalProperties": TEXT},
            "expires_at": {"type": ["number", "null"], "description": "Epoch seconds; null when they don't expire."},
            "generation": {"type": ["integer", "null"], "description": "Send it back with a report of a rejection."},
        }),
        "Report": _object({"status_code": {"type": "integer", "minimum": 100, "maximum": 599},
                           "generation": {"type": ["integer", "null"], "minimum": 0, "maximum": LARGEST_ID}},
                          required=["status_code"]),
        "ReportResult": _object({"dropped": {"type": "boolean"}, "status": {"enum": list(STATUSES)},
                                 "reason": TEXT}),
        "RelayResult": _object({
            "status_code": {"type": "integer"},
            "headers": {"type": "array", "items": {"$ref": "#/components/schemas/Header"}},
            "body": {**TEXT, "description": "The whole response body (a response over the size cap fails with response_too_large)."},
        }),
        "Error": {
            "type": "object",
            "properties": {
                "error": {**TEXT, "description": "A stable code: " + ", ".join(ERROR_CODES.values())
                          + ", need_login, token_error, relay_disabled, host_not_allowed, or an outbound reason."},
                "message": {**TEXT, "description": "For people; never a secret."},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": TEXT},
                           "description": "validation_failed: messages per field; rows as conditions[0].value."},
                "reason": TEXT,
                "version": {"type": "integer", "description": "conflict: the current version."},
            },
            "required": ["error", "message"],
        },
    }


def _one_of_methods(suffix):
    references = {method: f"#/components/schemas/{_name(method)}{suffix}" for method in METHODS}
    return {"oneOf": [{"$ref": reference} for reference in references.values()],
            "discriminator": {"propertyName": "method", "mapping": references}}


def _name(method):
    return {"api_key": "ApiKey", "basic": "Basic", "oauth2": "OAuth2"}[method]


def _json(schema_name):
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


def _responses(success, *errors):
    """Describe the answers of an operation: {status: (description, schema name or None)} then error statuses."""
    answers = {str(status): {"description": text, **(_json(schema) if schema else {})}
               for status, (text, schema) in success.items()}
    answers.update({str(status): {"description": ERROR_CODES.get(status, "error"), **_json("Error")} for status in errors})
    return answers


def _body(schema_name, required=True):
    return {"required": required, **_json(schema_name)}


def _operation(summary, responses, body=None, scope="use"):
    operation = {"summary": summary, "description": f"Scope: {scope}.", "responses": responses}
    if body:
        operation["requestBody"] = body
    return operation


def openapi_document(server_url):
    """Return the OpenAPI 3.1 document of the API served at server_url."""
    identified = {"parameters": [{"name": "authenticator_id", "in": "path", "required": True,
                                  "schema": {"type": "integer", "minimum": 0}}]}
    action = "/authenticators/{authenticator_id}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "apiauth",
            "version": "1",
            "description": "The authenticators of one domain, for services holding a service token of it. "
                           "Every error is JSON with a stable `error` code.",
        },
        "servers": [{"url": server_url}],
        "security": [{"serviceToken": []}],
        "paths": {
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1",
                                                            "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/authenticators": {
                "get": {
                    **_operation("List the authenticators the token reaches, by id",
                                 _responses({200: ("A page", "AuthenticatorList")}, 401, 422)),
                    "parameters": [
                        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
                         "description": "Start after this id (from `next`)."},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                        {"name": "name", "in": "query", "schema": TEXT, "description": "Only the one of this name, ignoring case."},
                    ],
                },
                "post": _operation("Create an authenticator",
                                   _responses({201: ("Created", "Authenticator")}, *WRITE_STATUSES),
                                   _body("AuthenticatorCreate"), scope="manage"),
            },
            action: {
                **identified,
                "get": _operation("Show an authenticator, without secrets",
                                  _responses({200: ("The authenticator", "Authenticator")}, 401, 403, 404)),
                "patch": _operation("Change an authenticator",
                                    _responses({200: ("Changed", "Authenticator")}, *WRITE_STATUSES, 404, 409),
                                    _body("AuthenticatorPatch"), scope="manage"),
                "delete": _operation("Delete an authenticator",
                                     _responses({204: ("Deleted", None)}, 401, 403, 404), scope="manage"),
            },
            f"{action}/test": {**identified, "post": _operation(
                "Try the saved credentials on a request; records the status",
                _responses({200: ("What the test found", "TestResult")}, *WRITE_STATUSES, 404),
                _body("Request"), scope="manage")},
            f"{action}/credentials": {**identified, "post": _operation(
                "Get the headers and query parameters to add to a call",
                _responses({200: ("Credentials", "Credentials")}, *WRITE_STATUSES, 404, 409, 502),
                _body("CredentialsRequest", required=False))},
            f"{action}/report": {**identified, "post": _operation(
                "Report how the API answered a call made with the credentials",
                _responses({200: ("Recorded", "ReportResult")}, *WRITE_STATUSES, 404),
                _body("Report"))},
            f"{action}/relay": {**identified, "post": _operation(
                "Send a request to an allowed host with the credentials added",
                _responses({200: ("The response of the call", "RelayResult")}, *WRITE_STATUSES, 404, 409, 502),
                _body("Request"))},
        },
        "components": {
            "securitySchemes": {"serviceToken": {"type": "http", "scheme": "bearer",
                                                 "description": "A service token of the domain."}},
            "schemas": _schemas(),
        },
    }
