"""Use an authenticator from code running in the app's own process, without HTTP.

`apiauth.use(domain, name)` gives the same auth object as `apiauth.client`, for `requests`
and `httpx`, with the same cache and the same retry on 401; it calls apiauth.consumers
directly. Each call runs in an app context of its own, so its commits never carry the
caller's unfinished database work, and it works from any thread.
"""

from flask import current_app
from sqlalchemy import select

from .client import MARGIN, MAX_AGE, ApiauthAuth, ApiauthError, CredentialCache
from .consumers import ConsumerError, credentials, report
from .extensions import db
from .models import Authenticator, Domain


class InProcessSource:
    """Credentials and reports of one authenticator, named by its domain and name, for one consumer."""

    def __init__(self, app, domain, name, consumer):
        self.app, self.domain, self.name, self.consumer = app, domain, name, consumer
        self._authenticator_id = None

    def credentials(self, min_validity):
        """Return a credentials answer, as the API's credentials endpoint gives it."""
        with self.app.app_context():
            return _answer_or_raise(credentials, self._authenticator(), self.consumer, min_validity)

    def report(self, status_code, generation):
        """Tell apiauth how a call with the credentials went."""
        with self.app.app_context():
            return _answer_or_raise(report, self._authenticator(), self.consumer, status_code, generation)

    def _authenticator(self):
        """Return the authenticator, found by name once and by id after that."""
        if self._authenticator_id is None:
            self._authenticator_id = db.session.scalar(
                select(Authenticator.id)
                .join(Domain, Domain.id == Authenticator.domain_id)
                .where(Domain.name == self.domain, Authenticator.name_key == self.name.casefold())
            )
        authenticator = self._authenticator_id and db.session.get(Authenticator, self._authenticator_id)
        if authenticator is None:
            raise ApiauthError("not_found", f"Domain {self.domain!r} has no authenticator named {self.name!r}.", 404)
        return authenticator


def _answer_or_raise(use, *arguments):
    """Run a consumers function, raising its failure as the client's ApiauthError."""
    try:
        return use(*arguments)
    except ConsumerError as error:
        details = {"reason": error.reason} if error.reason else {}
        raise ApiauthError(error.code, error.message, error.status, details) from None


def use(domain, name, consumer="in-process", app=None, min_validity=0, margin=MARGIN, max_age=MAX_AGE):
    """Return an auth object for requests and httpx that uses an authenticator of a domain (both by name)."""
    app = app or current_app._get_current_object()
    source = InProcessSource(app, domain, name, consumer)
    cache = CredentialCache(source.credentials, source.report, min_validity=min_validity, margin=margin, max_age=max_age)
    return ApiauthAuth(cache)
