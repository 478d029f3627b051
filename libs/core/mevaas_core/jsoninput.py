"""JSON from outside (HTTP bodies, JSON-RPC, page tokens), parsed only after its nesting depth is
known to be small.

CPython's C JSON scanner recurses once per ``[``/``{`` and stops only at the interpreter's recursion
limit. py_ecc (imported through web3/eth_account by every service that signs or decodes
transactions) raises that limit to 100,000 at import, so in those processes a 100 KB body of ``[``
overflows the C stack and the process dies with SIGSEGV instead of a RecursionError: one request
killed the execution service (which serves the Protect RPC) and the in-process test fleet. The
depth is therefore measured first, at C speed, and a deeper document is refused as not JSON (a
ValueError, like every other malformed document) before any parser sees it."""

from __future__ import annotations

import array
import itertools
import json
import re
from typing import Any

MAX_DEPTH = 64  # protobuf's own JSON and binary parsers stop at 100
# A JSON string literal (escapes included), so brackets inside strings are not counted.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Openers to +1 and closers to -1 (0xff as a signed byte).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class JsonInputError(ValueError):
    """Not JSON, or nested deeper than the limit; the message is safe to show the caller."""


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonInputError if ``text`` nests arrays/objects deeper than ``max_depth``; cheap when
    it holds few brackets (about 0.1 s for 1 MB of nothing but brackets)."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than its number of openers
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii").translate(_STEPS)
    # The running sum of +1/-1 is the depth at each bracket. Where the document stops being JSON
    # the parser stops too, and up to there the sum is exactly the parser's depth.
    if max(itertools.accumulate(array.array("b", brackets)), default=0) > max_depth:
        raise JsonInputError(f"nested deeper than {max_depth} levels")


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input: every failure is a ValueError (JsonInputError for
    depth, json.JSONDecodeError or UnicodeDecodeError otherwise), never a crash."""
    text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
    check_depth(text, max_depth)
    return json.loads(text)
