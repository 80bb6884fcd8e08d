"""The OpenAPI description stays true: every route of the app is described, with the role it needs."""

from __future__ import annotations

import re
from pathlib import Path

from fleetd.api.app import create_app, route_index
from fleetd.api.batch import BatchRequest
from fleetd.api.openapi import build_spec
from fleetd.api.routes import template_key
from fleetd.ops.selector import Selector
from fleetd.runtime import Fleet
from tests.unit.opskit import settings, start_client

INDEX = route_index()
POLICY = INDEX.policy
rule_for = INDEX.rule_for


def _described() -> set[tuple[str, str]]:
    spec = build_spec(INDEX.routes)
    return {template_key(method, path) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_of_the_app_is_described(tmp_path: Path) -> None:
    app = create_app(Fleet(settings(tmp_path, [])))
    routes = {
        template_key(r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    assert len(routes) > 20
    missing = sorted(f"{m} {p}" for m, p in routes - _described())
    assert missing == [], f"routes missing from the description: {missing}"


def test_the_description_and_the_policy_table_cover_the_same_routes() -> None:
    policy = {template_key(m, p) for m, p in POLICY}
    assert _described() == policy
    assert len(INDEX.routes) == len(POLICY)  # no endpoint declared twice


def test_operations_carry_their_role_parameters_and_errors() -> None:
    spec = build_spec(INDEX.routes)
    assert spec["openapi"].startswith("3.1")
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            rule = rule_for(method, path)
            assert rule is not None
            assert op["x-fleetd-role"] == rule.access.name.lower()
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([^}]+)\}", path)), (method, path)
            if op["x-fleetd-role"] != "public":
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
                assert op["security"] == [{"bearer": []}]
            else:
                assert op["security"] == []
    stop = spec["paths"]["/api/v1/containers/{host}/{ref}/stop"]["post"]
    assert stop["x-fleetd-role"] == "operator" and {"404", "409", "502", "503", "504"} <= set(
        stop["responses"]
    )
    assert [p["name"] for p in stop["parameters"] if p["in"] == "query"] == ["t"]
    assert spec["paths"]["/api/v1/audit"]["get"]["x-fleetd-role"] == "admin"
    search = spec["paths"]["/api/v1/images/search"]["get"]
    assert {p["name"] for p in search["parameters"]} == {"term", "host", "limit"}


async def test_served_at_api_v1_openapi_json(tmp_path: Path) -> None:
    client = await start_client(settings(tmp_path, []))
    try:
        resp = await client.get("/api/v1/openapi.json")
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == build_spec(INDEX.routes)
    finally:
        await client.close()


async def test_answer_schemas_come_from_the_types_the_handlers_encode(tmp_path: Path) -> None:
    spec = build_spec(INDEX.routes)
    schemas = spec["components"]["schemas"]
    ok = spec["paths"]["/api/v1/hosts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/HostList"}
    client = await start_client(settings(tmp_path, []))
    try:
        summary = await (await client.get("/api/v1/summary")).json()
        assert set(summary) == set(schemas["SummaryView"]["properties"])
        assert set(summary["hosts"]) == set(schemas["HostCounts"]["properties"])
    finally:
        await client.close()
    assert set(schemas["HostView"]["properties"]) >= {"name", "state", "stale", "findings", "insecure_transport"}


async def test_error_and_batch_bodies_are_described_by_the_types_that_make_and_read_them(tmp_path: Path) -> None:
    spec = build_spec(INDEX.routes)
    schemas = spec["components"]["schemas"]
    stop = spec["paths"]["/api/v1/containers/{host}/{ref}/stop"]["post"]
    assert stop["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorAnswer"
    }
    detail = schemas["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"} and "host" in detail["properties"]
    batch = schemas["BatchRequest"]
    assert set(batch["properties"]) == set(BatchRequest.__struct_fields__)
    assert batch["required"] == ["action"]  # the handler, not the decoder, asks for a selector
    assert set(batch["properties"]["action"]["enum"]) == {"start", "stop", "restart", "remove"}
    assert set(schemas["Selector"]["properties"]) == set(Selector.__struct_fields__)
    client = await start_client(settings(tmp_path, []))
    try:
        resp = await client.get("/api/v1/containers", params={"limit": "x"})
        body = await resp.json()
    finally:
        await client.close()
    assert resp.status == 400
    assert set(body) == {"error"} and set(detail["required"]) <= set(body["error"])
