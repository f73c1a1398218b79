"""The MCP content type (``veilpost.org/mcp:1.0``): one JSON-RPC 2.0 message of one MCP
session per Veilpost message. Round trips, and every rule of the codec broken once: bad JSON,
wrong types, oversize, deep nesting. Standard library only (it also runs inside Pyodide)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veilpost.client.content import (
    CONTENT_TYPE_MCP,
    MAX_MCP_JSON_DEPTH,
    MAX_MCP_MESSAGE_BYTES,
    MAX_MCP_SESSION_BYTES,
    ContentDecodeError,
    ContentError,
    EncodedContent,
    InvalidContent,
    McpCodec,
    McpMessage,
    default_registry,
)

REGISTRY = default_registry()

REQUEST = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "search"}}
VALID: list[tuple[dict[str, Any], str]] = [
    (REQUEST, "request"),
    ({"jsonrpc": "2.0", "id": "a-1", "method": "ping"}, "request"),
    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notification"),
    ({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}, "response"),
    ({"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "no"}}, "error"),
    (
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "?", "data": [1]}},
        "error",
    ),
]


def _encoded(data: bytes, session: str | None = "s1") -> EncodedContent:
    parameters = () if session is None else (("session", session),)
    return EncodedContent(type=CONTENT_TYPE_MCP, parameters=parameters, content=data)


def test_type_id_and_registration() -> None:
    assert str(CONTENT_TYPE_MCP) == "veilpost.org/mcp:1.0"
    assert CONTENT_TYPE_MCP in REGISTRY


@pytest.mark.parametrize(("message", "kind"), VALID)
def test_round_trip_through_the_registry(message: dict[str, Any], kind: str) -> None:
    value = McpMessage.from_json("session_A-1", message)
    encoded = REGISTRY.encode(value)
    assert encoded.type == CONTENT_TYPE_MCP
    assert encoded.parameter("session") == "session_A-1"
    assert encoded.fallback is None  # machine traffic: never shown
    assert encoded.content == value.data  # the JSON text, as is
    decoded = REGISTRY.decode_bytes(encoded.to_bytes())
    assert decoded.known and decoded.value == value
    assert value.kind == kind and value.json == message
    assert value.method == message.get("method")
    assert value.request_id == message.get("id")


def test_json_is_a_copy() -> None:
    value = McpMessage.from_json("s", REQUEST)
    value.json["id"] = 8
    assert value.request_id == 7 and value.json == REQUEST


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=4,
    ),
    st.one_of(st.integers(), st.text(max_size=20)),
)
def test_any_json_params_round_trip(params: dict[str, Any], request_id: int | str) -> None:
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    value = McpMessage.from_json("s", message)
    assert McpCodec().decode(McpCodec().encode(value)).json == message


BAD_PAYLOADS: list[tuple[str, bytes, str]] = [
    ("not utf-8", b'{"jsonrpc":"2.0","method":"\xff"}', "not valid UTF-8"),
    ("not json", b'{"jsonrpc": "2.0", "method": ', "not JSON"),
    ("empty", b"", "not JSON"),
    ("trailing", b'{"jsonrpc":"2.0","method":"a"} x', "not JSON"),
    ("duplicate", b'{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}', "duplicate member name 'id'"),
    ("nan", b'{"jsonrpc":"2.0","id":1,"result":{"x":NaN}}', "NaN"),
    ("infinity", b'{"jsonrpc":"2.0","id":1,"result":{"x":-Infinity}}', "-Infinity"),
    (
        "lone surrogate",
        b'{"jsonrpc":"2.0","method":"a","params":{"x":"\\ud800"}}',
        "lone surrogate",
    ),
    ("huge number", b'{"jsonrpc":"2.0","method":"a","params":{"x":1e400}}', "out of range"),
    ("batch", b'[{"jsonrpc":"2.0","method":"a"}]', "no batches"),
    ("string", b'"hello"', "got a string"),
    ("no version", b'{"id":1,"method":"a"}', "expected '2.0'"),
    ("old version", b'{"jsonrpc":"1.0","id":1,"method":"a"}', "expected '2.0'"),
    ("numeric version", b'{"jsonrpc":2.0,"id":1,"method":"a"}', "expected '2.0'"),
    ("unknown member", b'{"jsonrpc":"2.0","method":"a","extra":1}', "unknown member 'extra'"),
    ("empty method", b'{"jsonrpc":"2.0","id":1,"method":""}', "non-empty string"),
    ("method number", b'{"jsonrpc":"2.0","id":1,"method":5}', "got a number"),
    (
        "params array",
        b'{"jsonrpc":"2.0","id":1,"method":"a","params":[1]}',
        "params must be an object",
    ),
    ("params null", b'{"jsonrpc":"2.0","method":"a","params":null}', "got null"),
    ("bool id", b'{"jsonrpc":"2.0","id":true,"method":"a"}', "got a boolean"),
    ("float id", b'{"jsonrpc":"2.0","id":1.5,"method":"a"}', "got a number"),
    ("null request id", b'{"jsonrpc":"2.0","id":null,"method":"a"}', "got null"),
    ("object id", b'{"jsonrpc":"2.0","id":{},"result":{}}', "got an object"),
    ("long id", b'{"jsonrpc":"2.0","id":"' + b"i" * 300 + b'","method":"a"}', "at most 256"),
    ("method and result", b'{"jsonrpc":"2.0","id":1,"method":"a","result":{}}', "a method and"),
    ("result and error", b'{"jsonrpc":"2.0","id":1,"result":{},"error":{}}', "both"),
    ("response without id", b'{"jsonrpc":"2.0","result":{}}', "has no id"),
    ("result not object", b'{"jsonrpc":"2.0","id":1,"result":[]}', "result must be an object"),
    ("error string", b'{"jsonrpc":"2.0","id":1,"error":"bad"}', "integer code"),
    (
        "error code string",
        b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}',
        "integer code",
    ),
    (
        "error code bool",
        b'{"jsonrpc":"2.0","id":1,"error":{"code":true,"message":"m"}}',
        "integer code",
    ),
    ("error no message", b'{"jsonrpc":"2.0","id":1,"error":{"code":1}}', "string message"),
    (
        "error extra",
        b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","x":1}}',
        "optional data",
    ),
    ("response with params", b'{"jsonrpc":"2.0","id":1,"result":{},"params":{}}', "has params"),
    ("nothing", b'{"jsonrpc":"2.0","id":1}', "neither a request"),
    (
        "deep",
        b'{"jsonrpc":"2.0","method":"a","params":'
        + b'{"a":' * MAX_MCP_JSON_DEPTH
        + b"1"
        + b"}" * (MAX_MCP_JSON_DEPTH + 1),
        f"deeper than {MAX_MCP_JSON_DEPTH}",
    ),
    (
        "recursion bomb",
        b'{"jsonrpc":"2.0","method":"a","params":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        f"deeper than {MAX_MCP_JSON_DEPTH}",
    ),
]


@pytest.mark.parametrize(("what", "data", "reason"), BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
def test_malformed_payloads_are_refused_with_the_reason(
    what: str, data: bytes, reason: str
) -> None:
    with pytest.raises(InvalidContent, match=re.escape(reason)):
        McpMessage("s", data)
    with pytest.raises(ContentDecodeError, match=re.escape(reason)):
        REGISTRY.decode_bytes(_encoded(data).to_bytes())


def test_depth_limit_is_exact() -> None:
    inner = b'{"a":' * (MAX_MCP_JSON_DEPTH - 2) + b"1" + b"}" * (MAX_MCP_JSON_DEPTH - 2)
    data = b'{"jsonrpc":"2.0","method":"a","params":' + inner + b"}"
    assert McpMessage("s", data).kind == "notification"  # exactly MAX_MCP_JSON_DEPTH levels


HOSTILE_STRINGS = [
    ("an unclosed string of escaped quotes", b'"' + b'\\"' * 131072),
    ("an unclosed string of quote-backslash runs", b'"ab\\' * 65536),
    ("an unclosed string ending in a backslash", b'"\\"' * 87381 + b"\\"),
    ("many empty strings", b'"' * 262144),
    ("deep brackets, then an unclosed string", b"[" * 100 + b'"' + b'\\"' * 131072),
]


@pytest.mark.parametrize(("what", "data"), HOSTILE_STRINGS, ids=[h[0] for h in HOSTILE_STRINGS])
def test_hostile_strings_are_refused_in_one_pass(what: str, data: bytes) -> None:
    """Cutting strings out before the nesting check takes one pass whatever the text: an
    unclosed string does not make it rescan from every quote (quadratic: hours of CPU for a
    1 MiB message, before any allow-list check)."""
    with pytest.raises(InvalidContent):
        McpMessage("s", data)
    with pytest.raises(ContentDecodeError):
        REGISTRY.decode_bytes(_encoded(data).to_bytes())


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    deep_text = "[" * (MAX_MCP_JSON_DEPTH * 2) + '\\"' + "{" * MAX_MCP_JSON_DEPTH
    data = json.dumps({"jsonrpc": "2.0", "method": "a", "params": {"t": deep_text}}).encode()
    assert McpMessage("s", data).kind == "notification"


def test_size_limit_is_exact() -> None:
    head = b'{"jsonrpc":"2.0","method":"a","params":{"x":"'
    tail = b'"}}'
    fits = head + b"x" * (MAX_MCP_MESSAGE_BYTES - len(head) - len(tail)) + tail
    assert len(McpMessage("s", fits).data) == MAX_MCP_MESSAGE_BYTES
    with pytest.raises(InvalidContent, match=f"at most {MAX_MCP_MESSAGE_BYTES} allowed"):
        McpMessage("s", fits[:-3] + b'x"}}')


@pytest.mark.parametrize(
    ("session", "error"),
    [
        ("", InvalidContent),
        ("has space", InvalidContent),
        ("ü", InvalidContent),
        ("s" * (MAX_MCP_SESSION_BYTES + 1), InvalidContent),
        (7, TypeError),
    ],
)
def test_bad_session_ids_are_refused(session: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        McpMessage(session, json.dumps(REQUEST).encode())
    if isinstance(session, str):
        with pytest.raises(ContentDecodeError, match="session id"):
            McpCodec().decode(_encoded(json.dumps(REQUEST).encode(), session))


def test_missing_session_parameter_and_wrong_types() -> None:
    with pytest.raises(ContentDecodeError, match="no session parameter"):
        McpCodec().decode(_encoded(json.dumps(REQUEST).encode(), None))
    with pytest.raises(TypeError, match="must be bytes"):
        McpMessage("s", json.dumps(REQUEST))  # type: ignore[arg-type]
    with pytest.raises(InvalidContent, match="not JSON-serializable"):
        McpMessage.from_json("s", {"jsonrpc": "2.0", "method": "a", "params": {"x": object()}})
    with pytest.raises(InvalidContent, match="not JSON-serializable"):
        McpMessage.from_json("s", {"jsonrpc": "2.0", "method": "a", "params": {"x": float("nan")}})
    with pytest.raises(InvalidContent, match="not JSON-serializable"):
        McpMessage.from_json("s", {"jsonrpc": "2.0", "method": "a", "params": {"x": "\ud800"}})
    text = EncodedContent(type=default_registry().encode("hi").type, content=b"{}")
    with pytest.raises(ContentDecodeError, match=re.escape("expected veilpost.org/mcp")):
        McpCodec().decode(text)


def test_errors_are_content_errors_and_messages_compare_by_value() -> None:
    assert issubclass(ContentDecodeError, ContentError)
    a = McpMessage("s", b'{"jsonrpc":"2.0","method":"a"}')
    assert a == McpMessage("s", b'{"jsonrpc":"2.0","method":"a"}')
    assert a != McpMessage("t", b'{"jsonrpc":"2.0","method":"a"}')
    assert "data" not in repr(a)  # the payload may be private
