"""What the admin's lists need to stay fast at team scale (issue 16).

Every list shows 25 rows a page and writes its rows' selection checkboxes out instead of
rendering each through the form templates (ListAdmin).

The lists of tables that only grow (events, activity, jobs, nodes: hundreds of thousands
of rows) count differently (LongListAdmin). A changelist counts its rows for the
paginator, and an exact COUNT(*) reads the whole table on every page view, which alone
costs more than the rest of the page. Past EXACT_UP_TO rows the list shows the planner's
estimate instead ("about 500000 events", templates/admin/pagination.html); smaller lists,
and every search, are counted exactly.

No list filters by workspace: a filter over a foreign key lists every row it points to
(200 workspaces a page, more each month, a third of a list's time); each list's search
finds rows by their workspace's name instead.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from workspace.forms import write_inputs

# Below this many rows an exact count costs a few milliseconds: count them.
EXACT_UP_TO = 10_000


def planned_rows(queryset: QuerySet[Any]) -> int | None:
    """How many rows PostgreSQL's planner expects `queryset` to return (one EXPLAIN, no
    scan), or None on a database that does not say."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    # Rows, not columns: the joins of select_related change no count but cost planning.
    counted = queryset.order_by().select_related(None).values("pk")
    try:
        sql, params = counted.query.sql_with_params()
    except EmptyResultSet:  # a filter that matches nothing (`pk__in=[]`): no query at all
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):  # a driver that does not decode json
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatingPaginator(Paginator):
    """Counts exactly up to EXACT_UP_TO rows; past that, says what the planner expects.

    The estimate comes from the table's statistics (kept by autovacuum): close to the
    truth, never exact. The page links follow it, so the last page may come up a little
    short or a few of the oldest rows may be past the last link; a date filter reaches
    them, and a log of hundreds of thousands of rows is read by filtering, not paging.
    """

    is_estimate = False

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        expected = planned_rows(rows) if isinstance(rows, QuerySet) else None
        if expected is not None and expected > EXACT_UP_TO:
            self.is_estimate = True
            return expected
        return super().count


class ListAdmin(admin.ModelAdmin):
    """Pages of 25 rows, each row's checkbox written out.

    Rendering, not the database, is most of a changelist's time once no row makes a query
    of its own: about half a millisecond of CPU per row of a nine-column list, so a page
    of Django's default 100 rows took 60-100 ms on this project's 2-core machine, and one
    of 50 rows of jobs or quota requests still 45-55 ms of CPU at team scale. The row
    checkbox is Django's own markup, written out: rendering it through the widget
    templates (three per row) took a third of a page."""

    list_per_page = 25

    def get_changelist_formset(self, request: HttpRequest, **kwargs: Any) -> Any:
        """The formset of `list_editable`, its inputs written out (a third of the VM sizes'
        list went to rendering its 75 inputs through the form templates)."""
        formset = super().get_changelist_formset(request, **kwargs)

        class WrittenFormSet(formset):  # type: ignore[misc, valid-type]
            def add_fields(self, form: Any, index: Any) -> None:
                super().add_fields(form, index)  # the hidden primary key comes in here
                write_inputs(form)

        return WrittenFormSet

    def action_checkbox(self, obj: Model) -> SafeString:
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )


class LongListAdmin(ListAdmin):
    """The admin of a table that only grows: one estimated count per page, not two exact
    ones, and no facet counts (one COUNT per filter choice over the whole table)."""

    paginator = EstimatingPaginator
    show_full_result_count = False  # Django's second COUNT(*), of the unfiltered table
    show_facets = admin.ShowFacets.NEVER

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        # A search says how many rows matched, exactly: the planner guesses poorly how
        # many messages contain a word, and the search reads the rows anyway.
        if request.GET.get(SEARCH_VAR):
            return Paginator(queryset, per_page, orphans, allow_empty_first_page)
        return super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
