"""What caterva.service.http tells FastAPI's OpenAPI that FastAPI cannot know: a request it
cannot validate is a 400 caterva JSON error, never 422; a login layer's 401 is on every route
it guards, not on the public ones."""

from __future__ import annotations

from fastapi import FastAPI

from caterva.service import http
from caterva.service.auth import require_tokens


def test_validation_is_400_and_a_token_layer_401_on_every_guarded_route():
    app = FastAPI()
    http.install(app)
    app.get("/v1/health")(lambda: {"status": "ok"})
    app.get("/v1/roots/{root}/chunk/{index}")(lambda root, index: {"root": root})
    require_tokens(app, ("tok",))
    doc = app.openapi()
    chunk = doc["paths"]["/v1/roots/{root}/chunk/{index}"]["get"]["responses"]
    assert "422" not in chunk
    assert chunk["400"]["content"]["application/json"]["schema"]["required"] == ["error"]
    assert "401" in chunk
    assert set(doc["paths"]["/v1/health"]["get"]["responses"]) == {"200"}
    assert "HTTPValidationError" not in doc.get("components", {}).get("schemas", {})
