"""Property test against the app's own OpenAPI schema: hypothesis draws requests for every
operation (values that follow the schema and values that do not); no answer is a 5xx, and every
2xx body has the fields its response schema requires."""

from __future__ import annotations

import string

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guim.serve import ServeSettings, create_app

TOKEN = "fuzz"
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def from_schema(schema: dict, spec: dict, item_ids: list[str], depth: int = 0) -> st.SearchStrategy:
    """A strategy of values that follow a (FastAPI-generated) JSON schema, biased towards ids
    the model knows so that requests reach the model, not only validation."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(spec["components"]["schemas"][name], spec, item_ids, depth)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, spec, item_ids, depth) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {k: from_schema(v, spec, item_ids, depth + 1) for k, v in props.items()}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), spec, item_ids, depth + 1), max_size=4)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**63)), schema.get("maximum", 2**63))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        return st.sampled_from(item_ids) | st.sampled_from(["view", "purchase", "cart"]) | TEXT
    return JUNK


@pytest.fixture(scope="module")
def fuzz_client(export_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "events.db"
    app = create_app(
        ServeSettings(source=export_dir, store=f"sqlite:///{db}", admin_token=TOKEN, max_k=50)
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [
        (path, method, op)
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
        if not path.startswith("/admin")  # gated swaps load models: tested in test_app
    ]


def test_no_5xx_from_anything_a_client_sends(fuzz_client):
    spec = fuzz_client.get("/openapi.json").json()
    model = fuzz_client.app.state.service.model
    item_ids = [str(x) for x in model.item_ids[1:6]]
    ops = operations(spec)
    assert {"/events", "/recommend", "/items", "/users/{user_id}/recommendations"} <= {
        p for p, _, _ in ops
    }

    @st.composite
    def request(draw):
        path, method, op = draw(st.sampled_from(ops))
        url = path
        query = {}
        for p in op.get("parameters", []):
            value = draw(from_schema(p.get("schema", {}), spec, item_ids) | JUNK)
            if p["in"] == "path":
                text = str(value) or "x"
                url = url.replace(
                    "{" + p["name"] + "}",
                    "".join(c if c in string.ascii_letters + string.digits else "_" for c in text)
                    or "x",
                )
            elif p["in"] == "query" and draw(st.booleans()):
                query[p["name"]] = value if not isinstance(value, (dict, list)) else str(value)
        body = None
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            body = draw(from_schema(schema, spec, item_ids) | JUNK)
        return method, url, query, body, op

    seen: dict[str, set[int]] = {}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request())
    def check(req):
        method, url, query, body, op = req
        r = fuzz_client.request(method.upper(), url, params=query, json=body)
        assert r.status_code < 500, (method, url, query, body, r.text)
        seen.setdefault(op["operationId"], set()).add(r.status_code)
        if 200 <= r.status_code < 300 and "application/json" in r.headers.get("content-type", ""):
            declared = op["responses"].get(str(r.status_code), {}).get("content", {})
            schema = declared.get("application/json", {}).get("schema", {})
            if "$ref" in schema:
                name = schema["$ref"].rsplit("/", 1)[-1]
                required = spec["components"]["schemas"][name].get("required", [])
                assert set(required) <= set(r.json()), (url, r.json())

    check()
    # the fuzzing reached the model, not only the validators
    assert any(200 in codes for name, codes in seen.items() if "recommend" in name), seen
