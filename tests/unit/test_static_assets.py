"""Lean static assets (issue 22): the pages load the trimmed Bootstrap (only the rules and
scripts Hangar uses, scripts/build-assets.sh), a favicon, and HTML compressed; a class a
template uses that the trimmed CSS lacks (added after the last build) fails here."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
CSS = [
    ROOT / "static/vendor/bootstrap-5.3.9/bootstrap.trimmed.min.css",
    ROOT / "static/hangar/hangar.css",
]
# Class names that are hooks for scripts or tests, or Django admin's own, not styles.
HOOKS = {"chart-legend", "paginator", "showall", "default", "support-matrix"}


def static_classes(value: str) -> list[str]:
    """The class names written out in full: a word inside or touching {% %} / {{ }} is a
    condition, a value or a piece of a name built at run time (the safelist's business)."""
    names, inside = [], False
    for word in value.split():
        touches = any(mark in word for mark in ("{%", "{{", "%}", "}}"))
        if not inside and not touches:
            names.append(word)
        if "{%" in word or "{{" in word:
            inside = True
        if "%}" in word or "}}" in word:
            inside = "{%" in word.rsplit("%}", 1)[-1] or "{{" in word.rsplit("}}", 1)[-1]
    return names


def test_every_class_a_template_uses_is_in_the_css_the_pages_load():
    defined = set(re.findall(r"\.(-?[_a-zA-Z][\w-]*)", "".join(p.read_text() for p in CSS)))
    missing = set()
    for template in (ROOT / "templates").rglob("*.html"):
        for found in re.finditer(r'class="([^"]*)"', template.read_text()):
            for name in static_classes(found.group(1)):
                if name not in defined and name not in HOOKS:
                    missing.add(f"{template.relative_to(ROOT)}: {name}")
    assert not missing, "rebuild with scripts/build-assets.sh: " + ", ".join(sorted(missing))


@pytest.mark.django_db
def test_pages_load_the_trimmed_bootstrap_a_favicon_and_come_compressed(client, team):
    client.force_login(team.reader)
    page = client.get(
        reverse("compute:jobs", args=[team.workspace.slug]), HTTP_ACCEPT_ENCODING="gzip"
    )
    assert page["Content-Encoding"] == "gzip"
    html = gzip.decompress(page.content).decode()
    assert "bootstrap.trimmed.min.css" in html and "bootstrap.trimmed.min.js" in html
    assert "bootstrap.min.css" not in html and "bootstrap.bundle" not in html
    assert re.search(r'<link rel="icon" href="[^"]*favicon[^"]*\.svg"', html)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301 and "favicon" in icon["Location"]
