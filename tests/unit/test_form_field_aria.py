"""Help text and field errors are read by screen readers: every id a field's
aria-describedby names is on the page (Django names `<id>_helptext` and `<id>_error`;
templates/partials/form_field.html renders them)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

DESCRIBED = re.compile(r'aria-describedby="([^"]+)"')
IDS = re.compile(r'\bid="([^"]+)"')


def dangling(html: str) -> list[str]:
    present = set(IDS.findall(html))
    named = {name for value in DESCRIBED.findall(html) for name in value.split()}
    return sorted(named - present)


@pytest.mark.parametrize(
    ("route", "data"),
    [
        ("compute:create", {"name": "", "vm_size": ""}),
        ("inference:model-create", {"name": "Bad Name"}),
        ("inference:batch-create", {"name": "x", "mini_batch_size": "0"}),
        ("compute:job-submit", {"command": ""}),
    ],
)
def test_every_help_text_and_error_a_field_points_to_is_on_the_page(client, team, route, data):
    client.force_login(team.admin)
    extra = ["cluster"] if route == "compute:create" else []
    url = reverse(route, args=[team.workspace.slug, *extra])
    shown = client.get(url).content.decode()
    assert DESCRIBED.search(shown) and not dangling(shown)
    answered = client.post(url, data).content.decode()
    assert "_error" in answered and not dangling(answered), dangling(answered)
