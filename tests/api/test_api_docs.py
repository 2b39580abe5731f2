"""The schema and the docs page a script writer starts from."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_schema_lists_every_resource_and_its_errors(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["info"]["title"] == "Hangar API"
    paths = schema["paths"]
    for path in (
        "/api/v1/workspaces",
        "/api/v1/workspaces/{slug}/computes",
        "/api/v1/workspaces/{slug}/computes/clusters",
        "/api/v1/workspaces/{slug}/jobs",
        "/api/v1/workspaces/{slug}/jobs/{job_id}/follow",
        "/api/v1/catalog/sizes",
    ):
        assert path in paths, path
    created = paths["/api/v1/workspaces/{slug}/computes/clusters"]["post"]["responses"]
    assert {"201", "403", "404", "409", "422"} <= set(created)
    assert "BearerAuth" in str(schema["components"]["securitySchemes"]) or "TokenAuth" in str(
        schema["components"]["securitySchemes"]
    )


def test_the_docs_page_loads_only_hangars_own_files(team):
    browser = Client()
    browser.force_login(team.reader)
    page = browser.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert any("swagger-ui-bundle.js" in s for s in sources)
    for source in sources:  # each is a file Hangar has (ninja's, found without its app)
        name = source.split("/static/", 1)[1].split("?")[0]
        unhashed = re.sub(r"\.[0-9a-f]{12}\.", ".", name)  # the manifest's hashed name
        assert finders.find(unhashed), source


def test_the_catalog_lists_families_and_filters_sizes(team):
    from tests.support.api import ApiClient
    from workspace.tokens import create_token

    api = ApiClient(create_token(team.reader, name="c", expires_in_days=1).secret)
    families = api.get("/catalog/families", data={"page_size": 100}).json()["results"]
    assert families and all(f["sizes"] >= 1 for f in families)
    gpu = api.get("/catalog/families", data={"category": "gpu"}).json()["results"]
    assert gpu and {f["category"] for f in gpu} == {"gpu"}
    sizes = api.get("/catalog/sizes", data={"gpu": "yes", "page_size": 100}).json()["results"]
    assert sizes and all(s["gpus"] > 0 for s in sizes)
    bad = api.get("/catalog/sizes", data={"min_vcpus": -1})
    assert bad.status_code == 422 and "min_vcpus" in bad.json()["errors"]
