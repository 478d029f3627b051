"""The gateway's JSON edges (the transcoded RPCs and the portal's sign-in) refuse what is not a
JSON object of the request's type with INVALID_ARGUMENT (400), never a 5xx or a crash: JSON that
is not an object, nesting deeper than the parser's recursion (which, in a process where py_ecc has
raised the recursion limit, as in this test run, used to kill the process with SIGSEGV), and a
1 MB value the parser would quote back in full. The gateway runs as its process would, alone
(no upstream): every refusal here happens before any service is called."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from mevaas_core import jsoninput

pytestmark = pytest.mark.integration

RPC = "/v1/mevaas.strategy.v1.StrategyService/CreateStrategy"
DEEP = (b"[" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000, b"[" * 65 + b"]" * 65)
NOT_OBJECTS = (b"1", b"null", b'"text"', b"[]", b"[{}]", b"true")


async def test_a_body_that_is_not_a_json_object_is_invalid_argument(lone_gateway: str) -> None:
    async with aiohttp.ClientSession() as http:
        for body in NOT_OBJECTS:
            async with http.post(f"{lone_gateway}{RPC}", data=body) as reply:
                assert reply.status == 400, (body, await reply.text())
                answer = await reply.json()
            assert answer["status"] == "INVALID_ARGUMENT"
            violation = answer["details"][0]["fieldViolations"][0]
            assert violation == {"field": "body", "description": "must be a JSON object"}, body


async def test_nesting_too_deep_is_invalid_argument_and_the_gateway_lives_on(lone_gateway: str) -> None:
    # The condition the crash needed: this process runs with py_ecc's recursion limit.
    assert sys.getrecursionlimit() >= 100_000
    async with aiohttp.ClientSession() as http:
        for body in DEEP:
            async with http.post(f"{lone_gateway}{RPC}", data=body) as reply:
                assert reply.status == 400, (body[:20], await reply.text())
                answer = await reply.json()
            assert answer["message"] == "body is not JSON"
            description = answer["details"][0]["fieldViolations"][0]["description"]
            assert description == f"nested deeper than {jsoninput.MAX_DEPTH} levels"
            headers = {"Content-Type": "application/json"}
            async with http.post(f"{lone_gateway}/portal/session", data=body, headers=headers) as reply:
                assert reply.status == 400, await reply.text()
                assert (await reply.json())["message"] == "body is not a JSON object"
        # Nesting within the limit is still parsed (and then judged as the request type).
        shallow = b'{"config": {"noSuchField": ' + b"[" * 10 + b"]" * 10 + b"}}"
        async with http.post(f"{lone_gateway}{RPC}", data=shallow) as reply:
            assert reply.status == 400
            assert (await reply.json())["message"] == "body is not a mevaas.strategy.v1.CreateStrategyRequest"
        async with http.get(f"{lone_gateway}/healthz") as reply:
            assert reply.status == 200


async def test_a_refusal_does_not_echo_a_1_mb_value(lone_gateway: str) -> None:
    huge = "x" * ((1 << 20) - 100)
    async with aiohttp.ClientSession() as http:
        # The parser's message quotes the bad enum value in full: only its start is passed on.
        async with http.post(f"{lone_gateway}{RPC}", json={"config": {"type": huge}}) as reply:
            assert reply.status == 400
            text = await reply.text()
        assert len(text) < 4096 and "Invalid enum value xxx" in text, text[:300]
        async with http.post(f"{lone_gateway}{RPC}", data=b'{"x": "' + huge.encode() + b'"') as reply:
            assert reply.status == 400
            assert len(await reply.text()) < 4096


async def test_a_body_is_read_whole_up_to_1_mb_and_refused_beyond(lone_gateway: str) -> None:
    # Sent in pieces: the body must be read to its end, not cut where the first piece ended.
    async def pieces(total: int) -> AsyncIterator[bytes]:
        yield b'{"config": {"name": "'
        for _ in range(total // 4096):
            yield b"n" * 4096
        yield b'", "type": "NOT_A_TYPE"}}'

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{lone_gateway}{RPC}", data=pieces(1_000_000)) as reply:
            assert reply.status == 400
            answer = await reply.json()
        assert answer["message"] == "body is not a mevaas.strategy.v1.CreateStrategyRequest", answer
        assert "NOT_A_TYPE" in answer["details"][0]["fieldViolations"][0]["description"]
        async with http.post(f"{lone_gateway}{RPC}", data=pieces(1_100_000)) as reply:
            assert reply.status == 400
            assert (await reply.json())["message"] == "body too large"
