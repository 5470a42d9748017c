"""The pane's query: one page of a domain's authenticators, searched and sorted."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import load_only

from ..extensions import db
from ..models import Authenticator

SORT_COLUMNS = {
    "name": (Authenticator.name_key,),
    "method": (Authenticator.method, Authenticator.grant_type),
    "modified_at": (Authenticator.modified_at,),
    "modified_by": (Authenticator.modified_by_name,),
    "status": (Authenticator.status, Authenticator.status_reason),
    "status_updated_at": (Authenticator.status_updated_at,),
}


# What a pane row shows: secrets and remembered test bodies stay in the database.
PANE_COLUMNS = (
    Authenticator.name, Authenticator.method, Authenticator.grant_type, Authenticator.modified_at,
    Authenticator.modified_by_name, Authenticator.status, Authenticator.status_reason,
    Authenticator.status_updated_at,
)


@dataclass
class PaneQuery:
    q: str = ""
    sort: str = "name"
    dir: str = "asc"
    page: int = 1

    @classmethod
    def from_args(cls, args):
        """Read the search, sort and page from request arguments, ignoring nonsense."""
        sort = args.get("sort", "name")
        direction = args.get("dir", "asc")
        return cls(
            q=args.get("q", "").strip()[:100],
            sort=sort if sort in SORT_COLUMNS else "name",
            dir=direction if direction in ("asc", "desc") else "asc",
            page=max(args.get("page", 1, type=int) or 1, 1),
        )

    def args(self, **changes):
        """Return URL arguments for this query with some changed, leaving out defaults."""
        values = {"q": self.q, "sort": self.sort, "dir": self.dir, "page": self.page, **changes}
        defaults = {"q": "", "sort": "name", "dir": "asc", "page": 1}
        return {k: v for k, v in values.items() if v != defaults[k]}


@dataclass
class PanePage:
    rows: list
    total: int
    page: int
    pages: int
    page_size: int

    @property
    def first(self):
        return (self.page - 1) * self.page_size + 1 if self.total else 0

    @property
    def last(self):
        return min(self.page * self.page_size, self.total)


def _escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def pane_page(domain_id, query, page_size):
    """Return one page of authenticators in two statements, whatever the domain's size."""
    where = [Authenticator.domain_id == domain_id]
    if query.q:
        where.append(Authenticator.name_key.like(f"%{_escape_like(query.q.casefold())}%", escape="\\"))
    total = db.session.scalar(select(func.count()).select_from(Authenticator).where(*where))
    pages = max((total + page_size - 1) // page_size, 1)
    page = min(query.page, pages)
    columns = (*SORT_COLUMNS[query.sort], Authenticator.id)
    order = [c.desc() if query.dir == "desc" else c.asc() for c in columns]
    # Page through ids alone (an index walk), then read only the rows of the page.
    page_ids = select(Authenticator.id).where(*where).order_by(*order).limit(page_size)
    page_ids = page_ids.offset((page - 1) * page_size).scalar_subquery()
    rows = db.session.scalars(
        select(Authenticator).options(load_only(*PANE_COLUMNS)).where(Authenticator.id.in_(page_ids)).order_by(*order)
    ).all()
    return PanePage(rows=rows, total=total, page=page, pages=pages, page_size=page_size)


def status_changes(domain_id, ids, since):
    """Return the authenticators among ids whose status or configuration changed after since."""
    if not ids:
        return []
    return db.session.scalars(
        select(Authenticator).where(
            Authenticator.domain_id == domain_id,
            Authenticator.id.in_(ids),
            (Authenticator.status_updated_at > since) | (Authenticator.modified_at > since),
        )
    ).all()
