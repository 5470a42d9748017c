"""Command-line tools: bootstrap, domains, users and demo data."""

import random
import secrets
import sys
from datetime import timedelta

import click
from flask import current_app
from sqlalchemy import func, insert, select

from .audit.events import COMMAND_LINE, record_event
from .extensions import db
from .rotation import drop, key_usage, rotate
from .models import (
    AUTHORIZATION_CODE_GRANTS,
    SERVICE_TOKEN_SCOPES,
    Authenticator,
    Domain,
    Membership,
    User,
    secret_context,
    utcnow,
)
from .service_tokens import authenticators_named, create_service_token, token_name_taken


def init_app(app):
    """Register the command groups with the app."""
    app.cli.add_command(bootstrap)
    app.cli.add_command(domains)
    app.cli.add_command(users)
    app.cli.add_command(demo)
    app.cli.add_command(tokens)
    app.cli.add_command(keys)


def _domain(name):
    domain = db.session.scalar(select(Domain).where(Domain.name == name))
    if domain is None:
        raise click.ClickException(f"No domain named {name!r}.")
    return domain


@click.command()
def bootstrap():
    """Create domain Default and user admin, when there are no users yet."""
    if db.session.scalar(select(User.id).limit(1)) is not None:
        return
    domain = db.session.scalar(select(Domain).where(Domain.name == "Default")) or Domain(name="Default")
    password = secrets.token_urlsafe(12)
    admin = User(username="admin")
    admin.set_password(password)
    admin.memberships.append(Membership(domain=domain, domain_manager=True))
    db.session.add(admin)
    db.session.commit()
    click.echo(f"Created domain Default and user admin with password: {password}")
    click.echo("This password is shown once. Sign in and keep it somewhere safe.")


@click.group()
def domains():
    """Manage domains."""


@domains.command("create")
@click.argument("name")
def create_domain(name):
    """Create a domain."""
    if db.session.scalar(select(Domain).where(Domain.name == name)) is not None:
        raise click.ClickException(f"Domain {name!r} already exists.")
    db.session.add(Domain(name=name))
    db.session.commit()
    click.echo(f"Created domain {name}.")


@click.group()
def users():
    """Manage users."""


@users.command("create")
@click.argument("username")
@click.option("--domain", "domain_names", multiple=True, help="A domain the user belongs to.")
@click.option("--domain-manager", is_flag=True, help="Grant Domain Management in those domains.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(username, domain_names, domain_manager, password_stdin):
    """Create a user, with a generated password unless one comes on stdin."""
    if db.session.scalar(select(User).where(User.username == username)) is not None:
        raise click.ClickException(f"User {username!r} already exists.")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    if not password:
        raise click.ClickException("The password is empty.")
    user = User(username=username)
    user.set_password(password)
    for name in domain_names:
        user.memberships.append(Membership(domain=_domain(name), domain_manager=domain_manager))
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created user {username}.")
    if not password_stdin:
        click.echo(f"Password (shown once): {password}")


@users.command("grant")
@click.argument("username")
@click.option("--domain", "domain_names", multiple=True, required=True, help="A domain to manage.")
def grant_domain_management(username, domain_names):
    """Grant a user Domain Management in domains, e.g. a user the portal signed in."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"No user named {username!r}.")
    for name in domain_names:
        domain = _domain(name)
        membership = user.membership(domain.id) or Membership(domain=domain)
        membership.domain_manager = True
        if membership not in user.memberships:
            user.memberships.append(membership)
        click.echo(f"{username} now holds Domain Management in {name}.")
    db.session.commit()


@click.group()
def demo():
    """Demo data."""


SEED_STATUSES = [
    ("succeeded", ""), ("failed", "invalid_client"), ("failed", "server_error"), ("failed", "timeout"),
    ("failed", "http_401"), ("not_tested", ""),
]
SEED_LOGIN_STATUSES = [("need_login", ""), ("connected", "")]
SEED_GRANTS = ("client_credentials", "authorization_code", "authorization_code_pkce", "password")


@demo.command("seed")
@click.option("--count", type=int, default=100, show_default=True)
@click.option("--domain", "domain_name", default="Default", show_default=True)
def seed(count, domain_name):
    """Fill a domain with COUNT authenticators of mixed methods and statuses."""
    domain = _domain(domain_name)
    author = db.session.scalar(select(User).join(Membership).where(Membership.domain_id == domain.id).limit(1))
    first = db.session.scalar(select(func.count()).where(Authenticator.domain_id == domain.id))
    author_id, author_name = (author.id, author.username) if author else (None, "")
    rows = [_seed_row(domain.id, author_id, author_name, n) for n in range(first, first + count)]
    for start in range(0, len(rows), 1000):
        db.session.execute(insert(Authenticator), rows[start:start + 1000])
    db.session.commit()
    click.echo(f"Added {count} authenticators to domain {domain_name}.")


def _seed_row(domain_id, author_id, author_name, number):
    """Describe one demo authenticator as a row, with a sealed demo secret."""
    ring = current_app.extensions["apiauth_keyring"]
    uid = secrets.token_hex(16)
    method = ("api_key", "basic", "oauth2", "oauth2")[number % 4]
    grant = SEED_GRANTS[(number // 4) % len(SEED_GRANTS)]
    login = method == "oauth2" and grant in AUTHORIZATION_CODE_GRANTS
    statuses = SEED_LOGIN_STATUSES if login else SEED_STATUSES
    status, reason = statuses[number % len(statuses)]
    name = f"Demo {method} {number:05d} {secrets.token_hex(4)}"
    secret_field = {"api_key": "value", "basic": "password", "oauth2": "client_secret"}[method]
    now = utcnow()
    row = {
        "uid": uid, "domain_id": domain_id, "name": name, "name_key": name.casefold(), "method": method,
        "description": "Demo data", "key": "X-API-Key" if method == "api_key" else "",
        "username": "demo" if method == "basic" else "", "grant_type": grant,
        "access_token_url": "https://auth.example.com/oauth/token" if method == "oauth2" else "",
        "auth_url": "https://auth.example.com/oauth/authorize" if method == "oauth2" else "",
        "client_id": f"client-{number}" if method == "oauth2" else "",
        "status": status, "status_reason": reason,
        "status_updated_at": now - timedelta(minutes=random.randint(0, 10000)) if status != "not_tested" else None,
        "modified_at": now - timedelta(minutes=random.randint(0, 100000)), "modified_by_id": author_id,
        "modified_by_name": author_name,
        "created_at": now, "extra_params": [], "conditions": [],
        f"{secret_field}_encrypted": ring.encrypt(f"demo-{secrets.token_hex(8)}", secret_context(uid, secret_field)),
    }
    return row


@click.group()
def tokens():
    """Manage service tokens."""


@tokens.command("create")
@click.option("--domain", "domain_name", required=True, help="The domain whose authenticators the token reaches.")
@click.option("--name", required=True, help="Who uses the token, e.g. the service's name.")
@click.option("--scope", type=click.Choice(list(SERVICE_TOKEN_SCOPES)), required=True,
              help="use: get credentials and relay calls; manage: also create, edit, delete and test.")
@click.option("--authenticator", "authenticator_names", multiple=True,
              help="Limit the token to this authenticator; repeat for more. Default: all of the domain.")
def create_token(domain_name, name, scope, authenticator_names):
    """Create a service token and print it, once."""
    domain = _domain(domain_name)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise click.ClickException("The name must have 1 to 100 characters.")
    if token_name_taken(domain.id, name):
        raise click.ClickException(f"Domain {domain_name!r} already has a service token named {name!r}.")
    found, missing = authenticators_named(domain.id, authenticator_names)
    if missing:
        raise click.ClickException(f"No authenticator named {', '.join(map(repr, missing))} in domain {domain_name!r}.")
    _, plain = create_service_token(domain, name, scope, found, created_by="command line")
    click.echo(f"Created service token {name} ({scope}) in domain {domain_name}.")
    click.echo(f"Token (shown once): {plain}")


@click.group()
def keys():
    """Encryption keys: usage and rotation."""


def _echo_usage():
    """Print how many stored values each key seals."""
    ring = current_app.extensions["apiauth_keyring"]
    usage = key_usage()
    for key_id in ring.key_ids:
        role = "first key: encrypts" if key_id == ring.primary_id else "old key: decrypts only"
        click.echo(f"{key_id}  {usage.get(key_id, 0):>8} values  ({role})")
    for key_id in sorted(set(usage) - set(ring.key_ids)):
        click.echo(f"{key_id}  {usage[key_id]:>8} values  (NOT in APIAUTH_ENCRYPTION_KEYS: unreadable)")
    return usage


@keys.command("status")
def keys_status():
    """Show how many stored values each key seals."""
    _echo_usage()


@keys.command("drop")
@click.argument("key_id")
@click.option("--force", is_flag=True, help="Clear the values the key still seals: those secrets are lost.")
def keys_drop(key_id, force):
    """Check that no stored value needs KEY_ID any more, or, with --force, clear those that do."""
    ring = current_app.extensions["apiauth_keyring"]
    if key_id == ring.primary_id:
        raise click.ClickException(f"Key {key_id} is the first key, which encrypts new values: put another key first.")
    in_use = key_usage().get(key_id, 0)
    if in_use and not force:
        raise click.ClickException(
            f"Key {key_id} still seals {in_use} values. Run `flask --app wsgi keys rotate` with the key in "
            f"APIAUTH_ENCRYPTION_KEYS to move them under the first key, or add --force to clear them: those "
            f"secrets and tokens are lost, and must be entered (or logged in) again."
        )
    if in_use:
        click.echo(f"Cleared {drop(key_id)} values sealed under key {key_id}; the authenticators that held them "
                   f"are Not tested (or Need to Login) and their audit trail says so.")
    click.echo(f"No value is sealed under key {key_id}: remove it from APIAUTH_ENCRYPTION_KEYS "
               f"(and from APIAUTH_ALLOW_MISSING_KEYS) on every instance.")


@keys.command("rotate")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
def keys_rotate(batch_size):
    """Re-encrypt every stored secret under the first key of APIAUTH_ENCRYPTION_KEYS."""
    ring = current_app.extensions["apiauth_keyring"]
    moved = rotate(batch_size, progress=lambda count: click.echo(f"re-encrypted {count} values so far"))
    click.echo(f"Re-encrypted {moved} values under key {ring.primary_id}.")
    usage = _echo_usage()
    remaining = {k for k, n in usage.items() if n and k != ring.primary_id}
    record_event("keys rotated", COMMAND_LINE, detail=(
        f"values re-encrypted under key {ring.primary_id}: {moved}; "
        f"left under old keys: {sum(usage[k] for k in remaining)}"))
    db.session.commit()
    missing = sorted(remaining - set(ring.key_ids))
    if remaining - set(missing):
        click.echo("Values remain under old keys (changed during the run?): run the command again.")
    if missing:
        click.echo(f"Values under key(s) {', '.join(missing)} cannot be opened without the key: "
                   f"`flask --app wsgi keys drop KEY_ID --force` clears them.")
    if not remaining:
        click.echo("No value remains under an old key: `flask --app wsgi keys drop KEY_ID` confirms it for a key, "
                   "then remove that key from APIAUTH_ENCRYPTION_KEYS.")
