"""The /schema pages load only scripts and styles the app serves itself: the docs work with no internet."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

from scheduler.settings import Settings
from server.app import create_app


def test_the_docs_page_loads_nothing_from_another_host(settings: Settings) -> None:
    with TestClient(app=create_app(settings.model_copy(update={"api_tokens": "t0k"})), timeout=30) as client:
        page = client.get("/schema", headers={"Authorization": "Bearer t0k"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {"js", "css"} <= {u.rsplit(".", 1)[-1] for u in urls}, urls
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        for url in urls:  # public: a browser fetches them without a token
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 10_000, url
        script = next(u for u in urls if u.endswith("swagger-ui-bundle.js"))
        assert "SwaggerUIBundle" in client.get(script).text  # Swagger UI itself, not a placeholder


def test_the_document_itself_is_served(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json")
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.")


def test_downloads_and_pages_are_typed_for_generated_clients(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    content = document["paths"]["/v1/assets/{asset_id}/content"]["get"]
    assert {(p["name"], p["in"]) for p in content["parameters"]} >= {("Range", "header"), ("If-Range", "header")}
    for code in ("200", "206"):
        media = content["responses"][code]["content"]
        # octet-stream first (what generators read as a file), then the families an asset's own type is from
        assert list(media)[0] == "application/octet-stream" and "*/*" not in media, media
        assert {"video/*", "audio/*", "image/*"} <= set(media), media
        assert all(m == {"schema": {"type": "string", "format": "binary"}} for m in media.values()), media
    assert "Content-Range" in content["responses"]["206"]["headers"]
    assert {"416", "404"} <= set(content["responses"])
    for path in ("/v1/jobs", "/v1/assets"):
        answer = document["paths"][path]["get"]["responses"]["200"]
        assert "Link" in answer["headers"], path
        assert any(p["name"] == "cursor" for p in document["paths"][path]["get"]["parameters"]), path
