"""The audit page's query: one page of a domain's events, filtered, newest first."""

from dataclasses import dataclass

from sqlalchemy import or_, select

from ..extensions import db
from ..models import AuditEvent
from .events import ACTIONS

FILTERS = ("authenticator", "actor", "action")


@dataclass
class AuditQuery:
    authenticator: str = ""
    actor: str = ""
    action: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args):
        """Read the filters and the page from request arguments, ignoring nonsense."""
        action = args.get("action", "")
        return cls(
            authenticator=args.get("authenticator", "")[:100],
            actor=args.get("actor", "")[:150],
            action=action if action in ACTIONS else "",
            page=max(args.get("page", 1, type=int) or 1, 1),
        )

    def args(self, **changes):
        """Return URL arguments for this query with some changed, leaving out empty ones."""
        values = {**{name: getattr(self, name) for name in FILTERS}, "page": self.page, **changes}
        return {name: value for name, value in values.items() if value and not (name == "page" and value == 1)}

    @property
    def filtered(self):
        return any(getattr(self, name) for name in FILTERS)


@dataclass
class AuditPage:
    events: list
    page: int
    has_next: bool


def _visible_in(domain_id):
    """The events a domain's page shows: its own and those of no one domain."""
    return or_(AuditEvent.domain_id == domain_id, AuditEvent.domain_id.is_(None))


def audit_page(domain_id, query, page_size):
    """Return one page of events, newest first, reading one row more to know if another page follows."""
    where = [_visible_in(domain_id)]
    if query.authenticator:
        where.append(AuditEvent.authenticator_name == query.authenticator)
    if query.actor:
        where.append(AuditEvent.actor == query.actor)
    if query.action:
        where.append(AuditEvent.action == query.action)
    events = db.session.scalars(
        select(AuditEvent)
        .where(*where)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .offset((query.page - 1) * page_size)
        .limit(page_size + 1)
    ).all()
    return AuditPage(events=events[:page_size], page=query.page, has_next=len(events) > page_size)


def filter_choices(domain_id):
    """Return the authenticator names and actors that the domain's events name, sorted."""
    def distinct(column):
        rows = db.session.scalars(select(column).where(_visible_in(domain_id), column != "").distinct())
        return sorted(rows, key=str.casefold)

    return {"authenticator": distinct(AuditEvent.authenticator_name), "actor": distinct(AuditEvent.actor),
            "action": list(ACTIONS)}
