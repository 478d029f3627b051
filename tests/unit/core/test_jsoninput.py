"""Untrusted JSON is depth-checked before parsing: a deeply nested document is a ValueError, never
a crash, even at the recursion limit py_ecc sets (100,000) under which CPython's C scanner
overflows the C stack; brackets inside strings do not count; the limit is exact."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mevaas_core import jsoninput


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def test_a_document_at_the_limit_parses_and_one_level_more_is_refused() -> None:
    assert jsoninput.loads(nested(jsoninput.MAX_DEPTH)) == json.loads(nested(jsoninput.MAX_DEPTH))
    with pytest.raises(jsoninput.JsonInputError, match="nested deeper than 64 levels"):
        jsoninput.loads(nested(jsoninput.MAX_DEPTH + 1))


def test_objects_and_arrays_count_alike() -> None:
    deep = '{"a":[' * 40 + "1" + "]}" * 40  # depth 80
    with pytest.raises(jsoninput.JsonInputError):
        jsoninput.loads(deep)
    shallow = '{"a":[' * 32 + "1" + "]}" * 32  # depth 64
    assert isinstance(jsoninput.loads(shallow.encode()), dict)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"x": "[" * 100_000, "y": ['a "quoted" \\ [[[', "{{{"]})
    assert jsoninput.loads(text)["x"] == "[" * 100_000
    assert jsoninput.loads(json.dumps("[" * 1000)) == "[" * 1000  # a bare string: no brackets at all


def test_an_escaped_quote_does_not_end_the_string_for_the_counter() -> None:
    # If \" ended the string, the brackets after it would look like data and vice versa.
    hidden = '["\\"' + "[" * 100 + '"]'
    assert jsoninput.loads(hidden) == ['"' + "[" * 100]
    exposed = '["\\\\"' + ",[" * 100 + "]" * 100 + "]"  # the string is a lone backslash
    with pytest.raises(jsoninput.JsonInputError):
        jsoninput.loads(exposed)


def test_many_shallow_brackets_are_not_deep() -> None:
    assert len(jsoninput.loads("[" + ",".join(["[]"] * 10_000) + "]")) == 10_000


def test_unbalanced_and_other_malformed_input_is_a_value_error() -> None:
    for bad in ("[" * 100_000, "]" * 10 + "[" * 10, '{"a": ', b"\xff\xfe{}", b"\x80abc", "", "[1,]"):
        with pytest.raises(ValueError):
            jsoninput.loads(bad)


def test_bytes_in_utf16_are_decoded_like_json_loads_does() -> None:
    assert jsoninput.loads('{"a": [1]}'.encode("utf-16")) == {"a": [1]}
    with pytest.raises(jsoninput.JsonInputError):
        jsoninput.loads(nested(100).encode("utf-16"))


def test_deep_input_under_py_eccs_recursion_limit_is_refused_not_a_segfault() -> None:
    """In a child process (a crash must not take the test run with it): with the limit raised as
    py_ecc does, plain json.loads dies of SIGSEGV on this input; jsoninput refuses it."""
    script = (
        "import sys; sys.setrecursionlimit(100_000)\n"
        "from mevaas_core import jsoninput\n"
        "for doc in ('[' * 100_000, '{\"a\":' * 50_000 + '1' + '}' * 50_000):\n"
        "    try:\n"
        "        jsoninput.loads(doc)\n"
        "    except ValueError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.splitlines() == ["nested deeper than 64 levels"] * 2
