"""Sign-in throttling: a few failures per user name, more per client address, in a sliding window.

Attempts are kept in the database, so every worker and instance counts the same ones. An
attempt is stored as a failure before its password is checked: concurrent guesses see each
other and cannot all slip under the limit. A refused attempt is taken back (it checked
nothing), a successful sign-in clears the user name's failures, and failures older than
the window are pruned, so the real user is never locked out beyond it.
"""

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from .extensions import db
from .models import SignInFailure


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused, and for how long more."""

    message: str
    retry_after: timedelta

    @property
    def retry_after_seconds(self):
        return max(math.ceil(self.retry_after.total_seconds()), 1)


def user_key(username):
    """Return the key failures of a user name are counted under: a keyed digest, never the name.

    Keyed with the app's secret, so that a password typed as a user name cannot be guessed
    back from a copy of the database.
    """
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, username.strip().casefold().encode(), hashlib.sha256).hexdigest()


def begin_attempt(username, address, now):
    """Store an attempt as a failure; return it and a Refusal if it goes beyond a limit (else None).

    A failed attempt is left as it is; failures the window has passed are pruned here.
    """
    db.session.execute(delete(SignInFailure).where(SignInFailure.failed_at <= now - _window()))
    attempt = SignInFailure(user_key=user_key(username), address=address or "", failed_at=now)
    db.session.add(attempt)
    db.session.commit()
    refusal = _refusal(attempt, now)
    if refusal is not None:
        db.session.delete(attempt)
        db.session.commit()
    return attempt, refusal


def clear_failures(attempt):
    """Forget the failures of the user name that just signed in, this attempt included."""
    db.session.execute(delete(SignInFailure).where(SignInFailure.user_key == attempt.user_key))
    db.session.commit()


def _window():
    return timedelta(minutes=current_app.config["SIGN_IN_WINDOW_MINUTES"])


def _refusal(attempt, now):
    """Return a Refusal if earlier failures of the user name, or of the address, fill their limit."""
    config = current_app.config
    limits = (
        (SignInFailure.user_key, attempt.user_key, config["SIGN_IN_FAILURES_PER_USER_NAME"],
         "Too many failed sign-ins for this user name."),
        (SignInFailure.address, attempt.address, config["SIGN_IN_FAILURES_PER_ADDRESS"],
         "Too many failed sign-ins from your network address."),
    )
    for column, value, allowed, message in limits:
        blocking = _oldest_failure_within_limit(column, value, allowed, attempt, now)
        if blocking is not None:
            retry_after = blocking + _window() - now
            return Refusal(f"{message} Try again in {_minutes(retry_after)}.", retry_after)
    return None


def _oldest_failure_within_limit(column, value, allowed, attempt, now):
    """Return when the allowed-th latest other failure happened, or None if there are fewer.

    Others still being checked count too: concurrent attempts may all be refused, never all
    let through. The attempt may go ahead once that failure leaves the window.
    """
    return db.session.scalar(
        select(SignInFailure.failed_at)
        .where(column == value, SignInFailure.failed_at > now - _window(), SignInFailure.id != attempt.id)
        .order_by(SignInFailure.failed_at.desc(), SignInFailure.id.desc())
        .offset(allowed - 1)
        .limit(1)
    )


def _minutes(duration):
    minutes = max(math.ceil(duration.total_seconds() / 60), 1)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
