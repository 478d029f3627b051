"""A fuzzer over every route of the gateway's OpenAPI document (issue 10, item 5), the HTTP edge in
front of the five services: random bytes, NUL characters, 1 MB strings, uint64 max and beyond,
undefined enum names, wrong JSON types, garbage page tokens and another tenant's ids, as POST
bodies and (read-only routes) GET queries, with a valid token, a garbage one or none. No answer
may be a 5xx, none may show database or driver text, and the gateway serves on afterwards.
``MEVAAS_HTTP_FUZZ_COUNT`` sets the generated bodies per route (default 3) besides the fixed
malformed ones; the acceptance run uses e.g. ``MEVAAS_HTTP_FUZZ_COUNT=100``."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer
from mevaas_sdk import MevaasClient
from tests.fixtures.fleet import Fleet
from tests.integration.security.fuzzing import FIXED_BODIES, FORBIDDEN_TEXT
from tests.integration.security.test_fuzz_rpcs import foreign_ids
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

COUNT = int(os.environ.get("MEVAAS_HTTP_FUZZ_COUNT", "3"))
# Any field may get a value of the wrong JSON type (or out of every range).
WRONG: tuple[Any, ...] = (
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    1e308,
    "a\x00b",
    {"x": 1},
    [1, "x"],
    None,
    True,
    "NOT_AN_ENUM_VALUE",
)
STRINGS: tuple[str, ...] = (
    "a\x00b",
    "x" * ((1 << 20) - 4096),  # 1 MB, still inside the body limit
    "!!not-a-token%%",
    "eyJvZmZzZXQiOiAtMX0=",  # base64 of a JSON page token with a negative offset
    "ünïcödé-\u202e",
    "",
)
INT64S: tuple[Any, ...] = ("18446744073709551615", 2**64 - 1, "-9223372036854775808", "1e99", 0, "-1")
INT32S: tuple[Any, ...] = (0, -1, 2**31 - 1, -(2**31), 2**32)
TIMES = ("1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday")


def json_value(field: FieldDescriptor, rng: random.Random, ids: Sequence[str], depth: int) -> Any:
    if rng.random() < 0.1:
        return rng.choice(WRONG)
    if field.message_type is not None:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return rng.choice(TIMES)
        if name == "google.protobuf.FieldMask":
            return rng.choice(("", "a,b", "no_such_field", "x\x00"))
        if name == "google.protobuf.Duration":
            return rng.choice(("1s", "-1s", "315576000001s", "x"))
        if name.startswith("google.protobuf."):
            return rng.choice(WRONG)
        if field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {rng.choice(STRINGS[:1] + STRINGS[2:]): json_value(value, rng, ids, depth + 1)}
        return json_message(field.message_type, rng, ids, depth + 1) if depth < 3 else {}
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if ids and field.name.endswith("_id") and rng.random() < 0.5:
            return rng.choice(ids)  # a real id of another tenant
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        names = [v.name for v in field.enum_type.values]
        return rng.choice([*names, "NOPE", 99, -7])
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.choice(("", "AAEC", "not base64!!", "A" * 4096))
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice((0.0, -1.0, 1e308, "NaN", "Infinity"))
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return rng.choice(INT64S)
    return rng.choice(INT32S)


def json_message(
    descriptor: Descriptor, rng: random.Random, ids: Sequence[str], depth: int = 0
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in descriptor.fields:
        if rng.random() < 0.4:
            continue
        if field.is_repeated and not (field.message_type and field.message_type.GetOptions().map_entry):
            body[field.json_name] = [json_value(field, rng, ids, depth) for _ in range(rng.randint(0, 3))]
        else:
            body[field.json_name] = json_value(field, rng, ids, depth)
    if rng.random() < 0.1:
        body["noSuchField"] = 1
    return body


def bodies(descriptor: Descriptor, rng: random.Random, ids: Sequence[str]) -> list[bytes]:
    out = list(FIXED_BODIES)
    for _ in range(COUNT):
        out.append(json.dumps(json_message(descriptor, rng, ids)).encode())
    return out


def queries(descriptor: Descriptor, rng: random.Random, ids: Sequence[str]) -> list[dict[str, str]]:
    """GET queries: each parameter a top-level field (repeated ones comma-separated)."""
    out: list[dict[str, str]] = [{"noSuchField": "1"}, {"page": "x"}]
    for _ in range(max(COUNT, 1)):
        query: dict[str, str] = {}
        for field in descriptor.fields:
            if rng.random() < 0.5:
                continue
            value = json_value(field, rng, ids, 2)
            query[field.json_name if rng.random() < 0.5 else field.name] = (
                value if isinstance(value, str) else json.dumps(value)
            )[: 1 << 16]
        out.append(query)
    return out


async def test_fuzzed_http_requests_never_get_5xx_or_database_text(
    fleet: Fleet, gateway_url: str, jwt_signing_key: SigningKey, admin_client: MevaasClient
) -> None:
    mine = await create_tenant(admin_client)
    theirs = await foreign_ids(fleet, admin_client)
    issuer = TokenIssuer(jwt_signing_key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=3600)
    token, _ = issuer.issue(
        Principal(
            subject="fuzzer",
            tenant_id=mine.tenant.tenant_id,
            roles=frozenset({Role.OWNER}),
            rate_per_second=100_000,
            burst=100_000,
        )
    )
    callers: tuple[dict[str, str], ...] = (
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"Bearer {token}"},
        {},
        {"Authorization": "Bearer not.a.jwt"},
        {"X-API-Key": "mk_" + "x" * 5000},
    )
    rng = random.Random(int(os.environ.get("MEVAAS_FUZZ_SEED", "10")))
    pool = descriptor_pool.Default()
    failures: list[str] = []
    codes: Counter[int] = Counter()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(f"{gateway_url}/openapi.json") as reply:
            document = await reply.json()
        paths = sorted(document["paths"])
        assert len(paths) > 50, paths  # every RPC of the five services

        async def check(what: str, status: int, text: str) -> None:
            codes[status] += 1
            if status >= 500:
                failures.append(f"{what}: {status} {text[:200]}")
            elif any(word in text.lower() for word in FORBIDDEN_TEXT):
                failures.append(f"{what}: {status} shows {text[:300]!r}")
            elif status != 200 and len(text) > 64 * 1024:
                failures.append(f"{what}: {status} error of {len(text)} bytes (echoes the input?)")

        for path in paths:
            service, method_name = path.removeprefix("/v1/").split("/")
            descriptor = pool.FindServiceByName(service).FindMethodByName(method_name).input_type
            for body in bodies(descriptor, rng, theirs):
                headers = {"Content-Type": "application/json", **rng.choice(callers)}
                async with http.post(f"{gateway_url}{path}", data=body, headers=headers) as reply:
                    await check(f"POST {path} {body[:60]!r}", reply.status, await reply.text())
            if "get" in document["paths"][path]:
                for query in queries(descriptor, rng, theirs):
                    headers = dict(rng.choice(callers))
                    async with http.get(f"{gateway_url}{path}", params=query, headers=headers) as reply:
                        await check(f"GET {path} {str(query)[:60]}", reply.status, await reply.text())
        # No crash: the gateway still transcodes a well-formed call.
        async with http.post(
            f"{gateway_url}/v1/mevaas.strategy.v1.StrategyService/ListStrategies",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        ) as reply:
            assert reply.status == 200, await reply.text()
    print(
        f"fuzzed HTTP requests over {len(paths)} routes: {dict(sorted(codes.items()))} total {codes.total()}"
    )
    assert failures == [], f"{len(failures)} bad answers ({dict(codes)}):\n" + "\n".join(failures[:40])
