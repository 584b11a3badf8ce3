"""Schemathesis against the running REST gateway, from its committed OpenAPI
description: generated requests on every operation, signed as a client
would sign them. No answer may be a server error, and every answer must be
one the description documents (status, content type, headers, body)."""

import json
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flowgate_client import Credentials, rest_headers
from gateways.rest import openapi
from tests.server import ServerProcess, configured_venue

schema = schemathesis.openapi.from_path(openapi.DOCS / "openapi.json")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]  # fmt: skip


class Signer(requests.auth.AuthBase):
    """Signs each request as sent: its path with the query string, its body."""

    def __init__(self, credentials: Credentials):
        self.credentials = credentials

    def __call__(self, request):
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        request.headers.update(rest_headers(self.credentials, request.method,
                                            request.path_url, body))  # fmt: skip
        return request


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    data = tmp_path_factory.mktemp("schema") / "venue"
    limits = {"ip_rate": 10**6, "ip_burst": 10**6, "key_rate": 10**6, "key_burst": 10**6,
              "order_rate": 10**6, "order_burst": 10**6}  # fmt: skip
    server = ServerProcess(data, *configured_venue(data, {"limits": limits}))
    entries = json.loads((data / "demo-credentials.json").read_text())
    entry = next(e for e in entries if e["account"] == 2 and e["type"] == "hmac-sha256")
    session = requests.Session()
    session.auth = Signer(Credentials.from_entry(entry))
    yield f"http://127.0.0.1:{server.rest_port}", session
    session.close()
    assert server.stop() == 0


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_the_api_answers_as_it_documents(case, venue):
    base_url, session = venue
    time.sleep(0)  # (each case is signed afresh by the session's auth)
    case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)
