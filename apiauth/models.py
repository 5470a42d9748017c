"""Domains, users and their memberships, authenticators and audit events."""

import secrets
from datetime import UTC, datetime

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


# The largest value of an Integer column (ids, generations) on every database we support:
# a larger id in a URL finds nothing rather than overflowing PostgreSQL's int4.
LARGEST_ID = 2**31 - 1


def find(model, row_id):
    """Return the row of a model with this id, or None, also for ids no Integer column holds."""
    if row_id is None or not 0 <= row_id <= LARGEST_ID:
        return None
    return db.session.get(model, row_id)


def utcnow():
    """Return the current time in UTC, without tzinfo, as every timestamp is stored."""
    return datetime.now(UTC).replace(tzinfo=None)


class Domain(db.Model):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    memberships: Mapped[list["Membership"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    def set_password(self, password):
        """Store a salted hash of the password."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        """Tell whether the password matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def membership(self, domain_id):
        """Return the membership in a domain, or None."""
        return next((m for m in self.memberships if m.domain_id == domain_id), None)

    def manages(self, domain_id):
        """Tell whether the user holds the Domain Management privilege of a domain."""
        membership = self.membership(domain_id)
        return bool(membership and membership.domain_manager)


class Membership(db.Model):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "domain_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    domain_manager: Mapped[bool] = mapped_column(default=False)
    user: Mapped[User] = relationship(back_populates="memberships")
    domain: Mapped[Domain] = relationship(lazy="joined")


METHODS = {"api_key": "API Key", "basic": "Basic Auth", "oauth2": "OAuth 2.0"}
GRANT_TYPES = {
    "client_credentials": "Client Credentials",
    "authorization_code": "Authorization Code",
    "authorization_code_pkce": "Authorization Code with PKCE",
    "password": "Password (legacy)",
}
AUTHORIZATION_CODE_GRANTS = ("authorization_code", "authorization_code_pkce")
STATUSES = {
    "not_tested": "Not tested",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "need_login": "Need to Login",
    "connected": "Connected",
}
SECRET_FIELDS = ("value", "password", "client_secret")


def secret_context(uid, field):
    """Name the row and field a ciphertext belongs to; decryption anywhere else fails."""
    return f"authenticator:{uid}:{field}"


def verifier_context(state_hash):
    """Name the Login attempt a sealed PKCE verifier belongs to."""
    return f"login:{state_hash}:code_verifier"


class Authenticator(db.Model):
    __tablename__ = "authenticators"
    __table_args__ = (
        UniqueConstraint("domain_id", "name_key", name="uq_authenticators_domain_name"),
        Index("ix_authenticators_domain_method", "domain_id", "method", "grant_type"),
        Index("ix_authenticators_domain_modified_at", "domain_id", "modified_at"),
        Index("ix_authenticators_domain_modified_by_name", "domain_id", "modified_by_name"),
        Index("ix_authenticators_domain_status", "domain_id", "status", "status_reason"),
        Index("ix_authenticators_domain_status_updated_at", "domain_id", "status_updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random identity that binds each ciphertext to this row: copied elsewhere, it won't open.
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    method: Mapped[str] = mapped_column(String(20))

    key: Mapped[str] = mapped_column(String(200), default="")
    add_to: Mapped[str] = mapped_column(String(10), default="header")
    username: Mapped[str] = mapped_column(String(200), default="")
    grant_type: Mapped[str] = mapped_column(String(40), default="client_credentials")
    access_token_url: Mapped[str] = mapped_column(String(2000), default="")
    auth_url: Mapped[str] = mapped_column(String(2000), default="")
    client_id: Mapped[str] = mapped_column(String(500), default="")
    scope: Mapped[str] = mapped_column(String(1000), default="")
    client_authentication: Mapped[str] = mapped_column(String(20), default="basic_header")
    code_challenge_method: Mapped[str] = mapped_column(String(10), default="S256")
    audience: Mapped[str] = mapped_column(String(500), default="")
    resource: Mapped[str] = mapped_column(String(2000), default="")
    # [{"target": "authorization" | "token", "name": ..., "value": ...}]
    extra_params: Mapped[list] = mapped_column(JSON, default=list)
    token_prefix: Mapped[str] = mapped_column(String(40), default="Bearer")
    # [{"source": ..., "name": ..., "operator": ..., "value": ...}]
    conditions: Mapped[list] = mapped_column(JSON, default=list)

    value_encrypted: Mapped[str | None] = mapped_column(Text)
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text)

    status: Mapped[str] = mapped_column(String(20), default="not_tested")
    status_reason: Mapped[str] = mapped_column(String(200), default="")
    status_updated_at: Mapped[datetime | None] = mapped_column()

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # The name as it was at the change, like an audit event's actor: the pane sorts on it.
    modified_by_name: Mapped[str] = mapped_column(String(150), default="", server_default="")
    version: Mapped[int] = mapped_column(default=1)

    # The last Test's request, filled in next time (not configuration: no version bump).
    test_method: Mapped[str] = mapped_column(String(10), default="GET", server_default="GET")
    test_url: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    test_headers: Mapped[str] = mapped_column(Text, default="", server_default="")
    test_body: Mapped[str] = mapped_column(Text, default="", server_default="")

    # Hosts a consumer may reach through the relay; empty means relay is off.
    allowed_hosts: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    last_consumer: Mapped[str] = mapped_column(String(150), default="", server_default="")
    last_used_at: Mapped[datetime | None] = mapped_column()

    __mapper_args__ = {"version_id_col": version}

    def __init__(self, **fields):
        # The uid must exist before any secret is sealed to it.
        fields.setdefault("uid", secrets.token_hex(16))
        super().__init__(**fields)

    @property
    def method_label(self):
        """Human name of the method, with the grant for OAuth."""
        if self.method == "oauth2":
            return f"OAuth 2.0 · {GRANT_TYPES.get(self.grant_type, self.grant_type)}"
        return METHODS.get(self.method, self.method)

    @property
    def status_label(self):
        """Human name of the status."""
        return STATUSES.get(self.status, self.status)

    @property
    def uses_login(self):
        """Tell whether a person must log in at the provider for this authenticator."""
        return self.method == "oauth2" and self.grant_type in AUTHORIZATION_CODE_GRANTS


    def has_secret(self, field):
        """Tell whether a secret field holds a value."""
        return getattr(self, f"{field}_encrypted") is not None

    def get_secret(self, field):
        """Decrypt a secret field; '' when it is not set."""
        sealed = getattr(self, f"{field}_encrypted")
        if sealed is None:
            return ""
        return current_app.extensions["apiauth_keyring"].decrypt(sealed, secret_context(self.uid, field))

    def set_secret(self, field, plaintext):
        """Encrypt and store a secret field; an empty value clears it."""
        sealed = None
        if plaintext:
            sealed = current_app.extensions["apiauth_keyring"].encrypt(plaintext, secret_context(self.uid, field))
        setattr(self, f"{field}_encrypted", sealed)


class TokenState(db.Model):
    """The tokens an OAuth authenticator holds, apart from its configuration and its version."""

    __tablename__ = "token_states"

    authenticator_id: Mapped[int] = mapped_column(
        ForeignKey("authenticators.id", ondelete="CASCADE"), primary_key=True
    )
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    token_type: Mapped[str] = mapped_column(String(40), default="Bearer")
    scope: Mapped[str] = mapped_column(String(1000), default="")
    # Epoch seconds, as the engine counts.
    expires_at: Mapped[float | None] = mapped_column()
    obtained_at: Mapped[float | None] = mapped_column()
    # Bumped by every write of new tokens, so that a stale writer cannot overwrite newer ones.
    generation: Mapped[int] = mapped_column(default=0)
    # The lease of whoever is getting new tokens: one token request per expiry, across workers.
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[float | None] = mapped_column()
    # The last failed renewal, so that callers waiting on the lease share its failure.
    failure_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    failed_at: Mapped[float | None] = mapped_column()


service_token_authenticators = db.Table(
    "service_token_authenticators",
    db.Column("service_token_id", ForeignKey("service_tokens.id", ondelete="CASCADE"), primary_key=True),
    db.Column("authenticator_id", ForeignKey("authenticators.id", ondelete="CASCADE"), primary_key=True),
)

SERVICE_TOKEN_SCOPES = {"use": "Use: get credentials and relay calls", "manage": "Manage: also create, edit, delete and test"}


class ServiceToken(db.Model):
    """A bearer token with which a service uses (or manages) one domain's authenticators."""

    __tablename__ = "service_tokens"
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_service_tokens_domain_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the token: the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, to tell tokens apart in lists.
    token_prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(150), default="")
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    # Empty: every authenticator of the domain.
    authenticators: Mapped[list[Authenticator]] = relationship(secondary=service_token_authenticators)

    @property
    def active(self):
        return self.revoked_at is None

    def may_use(self, authenticator):
        """Tell whether this token reaches an authenticator of its domain."""
        return authenticator.domain_id == self.domain_id and (
            not self.authenticators or authenticator.id in {allowed.id for allowed in self.authenticators}
        )


class LoginAttempt(db.Model):
    """One Login started by a user for an authenticator: what its callback must match."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the state sent to the provider; the state itself is not kept.
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    authenticator_id: Mapped[int] = mapped_column(ForeignKey("authenticators.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of a random value kept in the signed-in session that started the Login.
    session_binding: Mapped[str] = mapped_column(String(64))
    code_verifier_encrypted: Mapped[str | None] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    expected_issuer: Mapped[str] = mapped_column(String(2000), default="")
    issuer_required: Mapped[bool] = mapped_column(default=False)
    return_to: Mapped[str] = mapped_column(String(2000), default="")
    popup: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class AuditEvent(db.Model):
    """Something that happened: who did it (actor), what (action), to which authenticator.

    An event of no one domain (a key rotation, a failed sign-in with an unknown user name)
    has no domain_id and shows on every domain's audit page.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_domain_created_at", "domain_id", "created_at"),
        Index("ix_audit_events_authenticator_created_at", "authenticator_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    authenticator_id: Mapped[int | None] = mapped_column(
        ForeignKey("authenticators.id", ondelete="SET NULL")
    )
    authenticator_name: Mapped[str] = mapped_column(String(100), default="")
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(40))
    # Names of the fields that changed: never their values.
    changes: Mapped[list] = mapped_column(JSON, default=list)
    version: Mapped[int | None] = mapped_column()
    # A short note: a failure's reason code, counts. Never a secret, never a typed user name.
    detail: Mapped[str] = mapped_column(String(300), default="", server_default="")
    # The client address of the request that caused the event; empty on the command line.
    address: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class UserSession(db.Model):
    """A signed-in browser session; signing out deletes it, so a copy of the cookie is refused."""

    __tablename__ = "user_sessions"

    # SHA-256 of the random value kept in the signed session cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInFailure(db.Model):
    """A failed sign-in, counted to throttle guessing per user name and per client address."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_user_key_failed_at", "user_key", "failed_at"),
        Index("ix_sign_in_failures_address_failed_at", "address", "failed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # HMAC-SHA-256 of the user name as typed, case-folded: people type passwords into that field.
    user_key: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column()


# The token fields kept encrypted in token_states.
TOKEN_SECRETS = ("access_token", "refresh_token")
