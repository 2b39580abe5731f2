"""Query shapes the pages share."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce


def count_per_row(related: QuerySet, link: str) -> Coalesce:
    """How many `related` rows point at each row of the outer query (through their `link`
    foreign key), as a correlated subquery: one index lookup a row.

    `Count(relation, distinct=True)` over two relations (a compute's nodes and its jobs)
    joins their product — every node row times every job ever, 1.6 M rows for a busy
    cluster — and sorts it to drop the duplicates; the paginator's count repeated it."""
    counted = (
        related.filter(**{link: OuterRef("pk")})
        .order_by()
        .values(link)
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)
