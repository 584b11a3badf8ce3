"""The committed OpenAPI description and reference page are what the code
generates, the description is valid OpenAPI 3.1, and it covers every route."""

import json

from openapi_spec_validator import validate

from gateways.rest import api, openapi


def test_the_committed_spec_and_page_are_generated_from_the_code():
    for path, text in openapi.files().items():
        assert path.read_text() == text, f"{path.name} is stale: python -m gateways.rest.openapi"


def test_the_spec_is_valid_openapi_3_1_and_covers_every_route():
    document = json.loads((openapi.DOCS / "openapi.json").read_text())
    validate(document)
    operations = {op["operationId"] for ops in document["paths"].values() for op in ops.values()}
    assert operations == {handler.__name__ for _, _, handler, _, _ in api.ROUTES}
    handlers = {handler.__name__: handler for _, _, handler, _, _ in api.ROUTES}
    for ops in document["paths"].values():
        for op in ops.values():  # the query parameters described are those the code reads
            described = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            assert described == api.QUERIES.get(handlers[op["operationId"]], set())
    place = document["paths"]["/v1/orders"]["post"]
    assert set(place["responses"]) >= {"200", "400", "401", "403", "409", "429", "503"}
    assert "RateLimit-Remaining" in place["responses"]["200"]["headers"]
    assert "Retry-After" in place["responses"]["429"]["headers"]
