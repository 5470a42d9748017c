"""One WTForms form per method, sharing the name, description and failure conditions."""

import ipaddress
import re
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import (
    Form,
    FieldList,
    FormField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from ..authentication import parse_headers
from ..engine.testing import TestRequest
from ..models import AUTHORIZATION_CODE_GRANTS, GRANT_TYPES, METHODS

CONDITION_SOURCES = {"status_code": "Status code", "header": "Header", "body": "Body"}
CONDITION_OPERATORS = {
    "equals": "equals",
    "not_equals": "does not equal",
    "contains": "contains",
    "not_contains": "does not contain",
    "matches": "matches (regular expression)",
    "greater_than": "greater than",
    "less_than": "less than",
}
CLIENT_AUTHENTICATIONS = {
    "basic_header": "Client secret in Basic header (client_secret_basic)",
    "body": "Client secret in the request body (client_secret_post)",
    "none": "None: public client (client_id only)",
}
PARAM_TARGETS = {"authorization": "Authorization request", "token": "Token request"}
HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def choices(labels):
    """Turn a {value: label} mapping into select options."""
    return [SelectChoice(value, label) for value, label in labels.items()]


def absolute_http_url(form, field):
    """Require an absolute http(s) URL."""
    if not field.data:
        return
    parts = urlsplit(field.data)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("Enter an absolute URL starting with https:// or http://.")


def text(field):
    """Return a text field's value stripped, '' when it was not sent."""
    return (field.data or "").strip()


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def normalize_host(text):
    """Return a host name in lower-case ASCII, or an IP address, as a URL would carry it; None if it is neither."""
    candidate = text.strip().lower().removesuffix(".")
    try:
        return str(ipaddress.ip_address(candidate.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    try:
        name = candidate.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = name.split(".")
    # An all-digit last label would make a mistyped IP address pass as a name.
    if len(name) > 253 or labels[-1].isdigit() or not all(HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return name


class LineListField(TextAreaField):
    """Items typed one per line, kept as a list."""

    def _value(self):
        return "\n".join(self.data or [])

    def process_formdata(self, valuelist):
        if valuelist:
            self.data = [line.strip() for line in (valuelist[0] or "").splitlines() if line.strip()]


class ConditionForm(Form):
    source = SelectField("Source", choices=choices(CONDITION_SOURCES))
    name = StringField("Header name", validators=[Length(max=200)])
    operator = SelectField("Operator", choices=choices(CONDITION_OPERATORS))
    value = StringField("Value", validators=[Length(max=2000)])

    def validate_name(self, field):
        if self.source.data == "header" and not text(field):
            raise ValidationError("Name the header this condition looks at.")

    def validate_value(self, field):
        if self.operator.data == "matches":
            try:
                re.compile(field.data)
            except re.error as error:
                raise ValidationError(f"This regular expression does not compile: {error}.") from None
        if self.operator.data in ("greater_than", "less_than") and _float(field.data) is None:
            raise ValidationError("Enter a number to compare with.")


class ExtraParamForm(Form):
    target = SelectField("Sent with", choices=choices(PARAM_TARGETS))
    name = StringField("Parameter", validators=[InputRequired("Name the parameter."), Length(max=200)])
    value = StringField("Value", validators=[Length(max=2000)])


class AuthenticatorForm(FlaskForm):
    """Fields that every method has."""

    method_name = ""
    secret_fields = ()

    method = SelectField("Method", choices=choices(METHODS))
    name = StringField(
        "Name",
        # DataRequired: it judges the name after stripping, so that blanks alone are no name.
        validators=[DataRequired("Give the authenticator a name."), Length(max=100)],
        filters=[lambda value: value.strip() if value else value],
    )
    description = TextAreaField("Description", validators=[Length(max=5000)])
    conditions = FieldList(FormField(ConditionForm), label="Failure conditions")
    allowed_hosts = LineListField(
        "Allowed hosts (relay)", default=list, validators=[Length(max=100, message="List at most 100 hosts.")]
    )
    version = HiddenField()

    def __init__(self, *args, stored_secrets=(), name_taken=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_secrets = set(stored_secrets)
        self._name_taken = name_taken

    def validate_name(self, field):
        if self._name_taken and field.data and self._name_taken(field.data):
            raise ValidationError("Another authenticator in this domain already has this name.")

    def validate_allowed_hosts(self, field):
        for host in field.data or []:
            if normalize_host(host) is None:
                raise ValidationError(
                    f"“{host}” is not a host name: enter one host per line, "
                    "such as api.example.com, without scheme, port or path."
                )

    def require_secret(self, field, message):
        """Fail a secret field that is blank and has no stored value to keep."""
        if not field.data and field.name not in self.stored_secrets:
            raise ValidationError(message)

    def values(self):
        """Return the configuration values of the form, without secrets."""
        values = {
            "name": self.name.data,
            "description": self.description.data or "",
            "method": self.method_name,
            "conditions": [_condition_values(entry.form) for entry in self.conditions],
            "allowed_hosts": list(dict.fromkeys(normalize_host(host) for host in self.allowed_hosts.data or [])),
        }
        values.update(self.method_values())
        return values

    def method_values(self):
        return {}

    def secrets(self):
        """Return the secret values typed; blank means keep what is stored."""
        return {field: getattr(self, field).data or "" for field in self.secret_fields}


def _condition_values(form):
    return {
        "source": form.source.data,
        "name": text(form.name) if form.source.data == "header" else "",
        "operator": form.operator.data,
        "value": form.value.data,
    }


class ApiKeyForm(AuthenticatorForm):
    method_name = "api_key"
    secret_fields = ("value",)

    key = StringField("Key", validators=[InputRequired("Enter the header or parameter name."), Length(max=200)])
    value = PasswordField("Value", validators=[Length(max=5000)])
    add_to = RadioField(
        "Add to", choices=choices({"header": "Header", "query": "Query parameter"}), default="header"
    )

    def validate_value(self, field):
        self.require_secret(field, "Enter the key's value.")

    def method_values(self):
        return {"key": text(self.key), "add_to": self.add_to.data}


class BasicAuthForm(AuthenticatorForm):
    method_name = "basic"
    secret_fields = ("password",)

    username = StringField("User name", validators=[InputRequired("Enter the user name."), Length(max=200)])
    password = PasswordField("Password", validators=[Length(max=5000)])

    def validate_password(self, field):
        self.require_secret(field, "Enter the password.")

    def method_values(self):
        return {"username": self.username.data}


class OAuth2Form(AuthenticatorForm):
    method_name = "oauth2"
    secret_fields = ("client_secret", "password")

    grant_type = SelectField("Grant type", choices=choices(GRANT_TYPES), default="client_credentials")
    access_token_url = StringField(
        "Access Token URL",
        validators=[InputRequired("Enter the Access Token URL."), Length(max=2000), absolute_http_url],
    )
    auth_url = StringField("Authorization URL", validators=[Length(max=2000), absolute_http_url])
    client_id = StringField("Client ID", validators=[InputRequired("Enter the client ID."), Length(max=500)])
    client_secret = PasswordField("Client secret", validators=[Length(max=5000)])
    client_authentication = SelectField(
        "Client authentication", choices=choices(CLIENT_AUTHENTICATIONS), default="basic_header"
    )
    scope = StringField("Scope", validators=[Length(max=1000)])
    username = StringField("User name", validators=[Length(max=200)])
    password = PasswordField("Password", validators=[Length(max=5000)])
    code_challenge_method = SelectField(
        "Code challenge method", choices=choices({"S256": "S256 (recommended)", "plain": "plain"}), default="S256"
    )
    audience = StringField("Audience", validators=[Length(max=500)])
    resource = StringField("Resource", validators=[Optional(), Length(max=2000), absolute_http_url])
    extra_params = FieldList(FormField(ExtraParamForm), label="Extra parameters")
    token_prefix = StringField("Token prefix", default="Bearer", validators=[Length(max=40)])

    @property
    def uses_login(self):
        return self.grant_type.data in AUTHORIZATION_CODE_GRANTS

    def validate_auth_url(self, field):
        if self.uses_login and not field.data:
            raise ValidationError("Enter the Authorization URL: this grant sends the user there to log in.")

    def validate_client_secret(self, field):
        if self.client_authentication.data != "none":
            self.require_secret(field, "Enter the client secret, or choose client authentication None.")

    def validate_client_authentication(self, field):
        if field.data != "none":
            return
        if self.grant_type.data == "client_credentials":
            raise ValidationError("The client credentials grant needs the client to authenticate.")
        if self.grant_type.data == "authorization_code":
            raise ValidationError("A public client must use Authorization Code with PKCE (RFC 9700).")

    def validate_username(self, field):
        if self.grant_type.data == "password" and not field.data:
            raise ValidationError("Enter the user name: the password grant sends it.")

    def validate_password(self, field):
        if self.grant_type.data == "password":
            self.require_secret(field, "Enter the password: the password grant sends it.")

    def method_values(self):
        grant = self.grant_type.data
        return {
            "grant_type": grant,
            "access_token_url": text(self.access_token_url),
            "auth_url": text(self.auth_url) if self.uses_login else "",
            "client_id": text(self.client_id),
            "client_authentication": self.client_authentication.data,
            "scope": text(self.scope),
            "username": (self.username.data or "") if grant == "password" else "",
            "code_challenge_method": self.code_challenge_method.data,
            "audience": text(self.audience),
            "resource": text(self.resource),
            "extra_params": [
                {"target": e.form.target.data, "name": text(e.form.name), "value": e.form.value.data}
                for e in self.extra_params
            ],
            "token_prefix": text(self.token_prefix) or "Bearer",
        }

    def secrets(self):
        secrets = super().secrets()
        if self.grant_type.data != "password":
            secrets.pop("password")
        return secrets


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class TestRequestForm(Form):
    """An HTTP request to try the credentials on."""

    __test__ = False  # not a pytest test class

    http_method = SelectField("HTTP method", choices=choices({m: m for m in HTTP_METHODS}), default="GET")
    url = StringField("URL", validators=[Length(max=2000), absolute_http_url])
    headers = TextAreaField("Headers", description="One per line, as Name: value.", validators=[Length(max=20000)])
    body = TextAreaField("Body", validators=[Length(max=100000)])

    def __init__(self, *args, url_optional=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.url_optional = url_optional

    def validate_url(self, field):
        if not (field.data or "").strip() and not self.url_optional:
            raise ValidationError("Enter the URL of an API call to try the credentials on.")

    def validate_headers(self, field):
        _, error = parse_headers(field.data)
        if error:
            raise ValidationError(error)

    def test_request(self):
        """Return the request the form describes, for the engine."""
        return TestRequest(
            self.http_method.data, text(self.url), parse_headers(self.headers.data)[0], self.body.data or ""
        )


FORMS = {"api_key": ApiKeyForm, "basic": BasicAuthForm, "oauth2": OAuth2Form}
