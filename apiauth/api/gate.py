"""The bearer-token gate of the API, and lookups scoped to the token's domain."""

import contextlib
import functools
import os
import sqlite3
import threading
import weakref

from flask import g, request
from sqlalchemy import and_, bindparam, exists, or_, select
from sqlalchemy.exc import DBAPIError

from ..extensions import db
from ..models import (
    LARGEST_ID,
    Authenticator,
    ServiceToken,
    TokenState,
    find,
    service_token_authenticators,
)
from ..service_tokens import TOKEN_MARK, hash_token, record_token_use, token_for_bearer
from .errors import MESSAGES, ApiError

GATE_ATTRIBUTE = "service_token_gate"
# What each scope may do: `manage` includes `use`.
SCOPES_ALLOWED = {"use": {"use", "manage"}, "manage": {"manage"}}
# The largest id a database column holds; a larger one would fail in the driver.


def service_token_required(scope, fast_path=None):
    """Let a view run only for an active service token holding `scope`.

    A fast path, `fast_path(scope, **view_args)`, may answer first; it must hold the gate's
    rules itself (read_reached does) and return None whenever the gate and the view should
    answer instead.
    """

    def decorate(view):
        @functools.wraps(view)
        def gated(*args, **kwargs):
            if fast_path is not None:
                answer = fast_path(scope, *args, **kwargs)
                if answer is not None:
                    return answer
            token = _bearer_token()
            if token is None:
                raise ApiError(401, "unauthorized", MESSAGES[401])
            record_token_use(token)
            if token.scope not in SCOPES_ALLOWED[scope]:
                raise ApiError(403, "forbidden", f"This needs a service token with scope {scope}.")
            g.service_token = token
            return view(*args, **kwargs)

        setattr(gated, GATE_ATTRIBUTE, scope)
        return gated

    return decorate


def _bearer_value():
    """Return the bearer token the request presents, or None."""
    credentials = request.authorization
    if credentials is None or credentials.type != "bearer" or not credentials.token:
        return None
    return credentials.token


def _bearer_token():
    """Return the active service token the request presents, or None."""
    plain = _bearer_value()
    return None if plain is None else token_for_bearer(plain)


def current_service_token():
    """Return the service token of this request."""
    return g.service_token


def get_authenticator(authenticator_id):
    """Return an authenticator the token reaches: 404 in another domain, 403 outside its list."""
    token = current_service_token()
    authenticator = find(Authenticator, authenticator_id)
    if authenticator is None or authenticator.domain_id != token.domain_id:
        raise ApiError(404, "not_found", "There is no authenticator with this id in this token's domain.")
    if not token.may_use(authenticator):
        raise ApiError(403, "forbidden", "This service token is limited to other authenticators.")
    return authenticator


def read_reached(scope, authenticator_id, columns):
    """Read columns of service_tokens, authenticators and token_states in one SELECT; return their values.

    The values come (a tuple, in the order of columns) only when the request's bearer token is
    active, holds `scope`, and reaches the authenticator (its domain, its list): the rules of
    the gate and of get_authenticator, in SQL. token_states is outer-joined: its values are
    None when the authenticator has no row there. None otherwise: the full gate tells why.
    """
    plain = _bearer_value()
    if not plain or not plain.startswith(TOKEN_MARK) or not 0 <= authenticator_id <= LARGEST_ID:
        return None
    statement = _reach_statement(db.engine.dialect, scope, columns)
    values = {"token_hash": hash_token(plain), "authenticator_id": authenticator_id}
    watch = _sqlite_watch(db.engine)
    return statement.first(values) if watch is None else watch.read(statement, values)


class _SqliteWatch:
    """Reads of one SQLite file kept until anything writes to it, in any process.

    `PRAGMA data_version` on a connection of its own (which never writes) changes whenever
    any other connection commits: a worker's own writes, another worker's, the command line's.
    A read is reused only while that number is still the one taken just before it: a revoked
    token, a report or a renewal shows at the next call, as without the reuse.
    """

    LARGEST = 1024

    def __init__(self, path):
        self.pid = os.getpid()
        self.path = path
        self.connection = None
        self.lock = threading.Lock()
        self.reads = {}

    def data_version(self):
        """Return the file's data version, or None when it cannot be read (then no read is reused)."""
        try:
            with self.lock:
                if self.connection is None:
                    self.connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                return self.connection.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

    def read(self, statement, values):
        """Return statement.first(values), reusing the last read if nothing was written since."""
        key = (statement, values["token_hash"], values["authenticator_id"])
        version = self.data_version()
        if version is None:
            return statement.first(values)
        kept = self.reads.get(key)
        if kept is not None and kept[0] == version:
            return kept[1]
        row = statement.first(values)
        if len(self.reads) >= self.LARGEST:
            self.reads.clear()
        self.reads[key] = (version, row)
        return row


_sqlite_watches = weakref.WeakKeyDictionary()


def _sqlite_watch(engine):
    """Return the watch of an engine's SQLite file (one per process), or None for another database."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return None
    watch = _sqlite_watches.get(engine)
    if watch is None or watch.pid != os.getpid():
        watch = _sqlite_watches[engine] = _SqliteWatch(path)
    return watch


class _CompiledRead:
    """A Core SELECT compiled once for a dialect, run on a pooled DBAPI connection.

    This is what Connection.execute does for a cached statement, without its execution
    context, events and result objects, which cost a busy credentials endpoint more than the
    read itself: binds are taken as they are (plain strings and numbers), and each value goes
    through its column type's result processor as Core would do.
    """

    def __init__(self, dialect, statement, columns):
        self.dialect, self.columns = dialect, columns
        self.compiled = statement.compile(dialect=dialect)
        # Some processors depend on the driver's type codes: known from the first execution.
        self.processors = None

    def first(self, values):
        """Return the first row's values, processed, or None."""
        params = self.compiled.construct_params(values)
        if self.compiled.positional:
            params = tuple(params[name] for name in self.compiled.positiontup)
        try:
            row = self._fetch_one(params)
        except self.dialect.loaded_dbapi.Error as error:
            # As Core would raise it (an OperationalError for a database out of reach: a 503), a
            # dead connection thrown away, and the parameters (a token's hash) kept out of the message.
            raise DBAPIError.instance(
                self.compiled.string, params, error, self.dialect.loaded_dbapi.Error, hide_parameters=True,
                connection_invalidated=self.dialect.is_disconnect(error, None, None),
            ) from error
        if row is None:
            return None
        return tuple(value if process is None or value is None else process(value)
                     for process, value in zip(self.processors, row, strict=True))

    def _fetch_one(self, params):
        connection = db.engine.raw_connection()
        try:
            with _autocommit(connection.driver_connection):
                cursor = connection.cursor()
                cursor.execute(self.compiled.string, params)
                row = cursor.fetchone()
                if self.processors is None:
                    self.processors = self._processors(cursor.description)
                cursor.close()
        except self.dialect.loaded_dbapi.Error as error:
            if self.dialect.is_disconnect(error, None, None):
                connection.invalidate(error)
            raise
        finally:
            connection.close()
        return row

    def _processors(self, description):
        return [
            column.type.dialect_impl(self.dialect).result_processor(self.dialect, described[1])
            for column, described in zip(self.columns, description, strict=True)
        ]


@contextlib.contextmanager
def _autocommit(driver_connection):
    """Run a lone read outside a transaction where the driver allows it (psycopg): no BEGIN and
    ROLLBACK round trips around it. sqlite3 (before Python 3.12) begins none for a SELECT anyway."""
    if not hasattr(driver_connection, "autocommit"):
        yield
        return
    previous = driver_connection.autocommit
    driver_connection.autocommit = True
    try:
        yield
    finally:
        driver_connection.autocommit = previous


# Keyed by dialect: each app (a test makes many) has its own engine and dialect.
@functools.lru_cache(maxsize=32)
def _reach_statement(dialect, scope, columns):
    link = service_token_authenticators
    limited = exists().where(link.c.service_token_id == ServiceToken.id)
    listed = exists().where(link.c.service_token_id == ServiceToken.id, link.c.authenticator_id == Authenticator.id)
    statement = (
        select(*columns)
        .select_from(ServiceToken)
        .join(Authenticator, and_(
            Authenticator.id == bindparam("authenticator_id"), Authenticator.domain_id == ServiceToken.domain_id,
        ))
        .outerjoin(TokenState, TokenState.authenticator_id == Authenticator.id)
        .where(
            ServiceToken.token_hash == bindparam("token_hash"),
            ServiceToken.revoked_at.is_(None),
            # Equalities, not IN: an IN list is expanded at every execution.
            or_(*(ServiceToken.scope == allowed for allowed in sorted(SCOPES_ALLOWED[scope]))),
            or_(~limited, listed),
        )
    )
    return _CompiledRead(dialect, statement, columns)
