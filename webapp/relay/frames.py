"""The JSON text frames of the WebSocket protocol at /ws/v1 (``docs/protocol.md``).

Client frames are parsed strictly (no type coercion: ``"1"`` is not a cursor, ``true`` is not
an integer) into the frozen models below; unknown fields are ignored so that newer clients
can talk to older relays. Server frames are built by the ``*_frame`` functions.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .delivery import MAX_SEQUENCE, StoredEnvelope
from .errors import InvalidInput, RelayError
from .identifiers import b64encode
from .mls_header import CONTENT_TYPE_NAMES, WIRE_FORMAT_NAMES

PROTOCOL_VERSION = 1
MAX_TOPICS_PER_FRAME = 1000

Ref = Annotated[str, Field(max_length=128)] | Annotated[int, Field(ge=-(2**53), le=2**53)]
TopicField = Annotated[str, Field(min_length=1, max_length=400)]
SequenceField = Annotated[int, Field(ge=0, le=MAX_SEQUENCE)]
TopicCursors = Annotated[
    dict[TopicField, SequenceField], Field(min_length=1, max_length=MAX_TOPICS_PER_FRAME)
]


class ClientFrame(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    ref: Ref | None = None


class AuthFrame(ClientFrame):
    type: Literal["auth"]
    nonce: Annotated[str, Field(max_length=64)]
    public_key: Annotated[str, Field(max_length=64)]
    signature: Annotated[str, Field(max_length=128)]


class PublishFrame(ClientFrame):
    type: Literal["publish"]
    topic: TopicField
    id: Annotated[str, Field(max_length=64)]
    payload: str


class SubscribeFrame(ClientFrame):
    type: Literal["subscribe"]
    topics: TopicCursors


class UnsubscribeFrame(ClientFrame):
    type: Literal["unsubscribe"]
    topics: Annotated[list[TopicField], Field(min_length=1, max_length=MAX_TOPICS_PER_FRAME)]


class ReceivedFrame(ClientFrame):
    type: Literal["received"]
    topics: TopicCursors


class PingFrame(ClientFrame):
    type: Literal["ping"]


FRAME_TYPES: dict[str, type[ClientFrame]] = {
    "auth": AuthFrame,
    "publish": PublishFrame,
    "subscribe": SubscribeFrame,
    "unsubscribe": UnsubscribeFrame,
    "received": ReceivedFrame,
    "ping": PingFrame,
}


def ref_of(content: Any) -> str | int | None:
    """The ``ref`` of a frame, for its error reply, when it is a valid one."""
    if isinstance(content, dict):
        ref = content.get("ref")
        if isinstance(ref, str) and len(ref) <= 128:
            return ref
        if isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) <= 2**53:
            return ref
    return None


def parse_frame(content: Any) -> ClientFrame:
    """Validate a decoded JSON frame, or raise ``invalid_frame`` / ``unknown_type``."""
    if not isinstance(content, dict):
        raise InvalidInput("invalid_frame", "a frame is a JSON object")
    frame_type = content.get("type")
    if not isinstance(frame_type, str):
        raise InvalidInput("invalid_frame", "a frame needs a string 'type'")
    model = FRAME_TYPES.get(frame_type)
    if model is None:
        raise InvalidInput(
            "unknown_type",
            f"unknown frame type {frame_type[:40]!r}; expected one of {', '.join(FRAME_TYPES)}",
        )
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        errors = [
            {"loc": [str(part) for part in error["loc"]], "msg": error["msg"]}
            for error in exc.errors()[:10]
        ]
        first = errors[0]
        raise InvalidInput(
            "invalid_frame",
            f"{frame_type} frame, field {'.'.join(first['loc'])}: {first['msg']}",
            errors=errors,
        ) from None


# --- Server frames --------------------------------------------------------------------------


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def envelope_fields(envelope: StoredEnvelope) -> dict[str, Any]:
    """An envelope as JSON: the same fields in ``envelope`` frames and in REST history."""
    return {
        "topic": envelope.topic,
        "sequence": envelope.sequence,
        "id": envelope.client_id,
        "wire_format": WIRE_FORMAT_NAMES.get(envelope.wire_format, str(envelope.wire_format)),
        "epoch": envelope.epoch,
        "content_type": (
            None
            if envelope.content_type is None
            else CONTENT_TYPE_NAMES.get(envelope.content_type, str(envelope.content_type))
        ),
        "size": envelope.size,
        "created_at": envelope.created_at.isoformat(),
        "payload": b64encode(envelope.payload),
    }


def envelope_frame(envelope: StoredEnvelope) -> str:
    return dumps({"type": "envelope", **envelope_fields(envelope)})


def error_frame(error: RelayError, ref: str | int | None) -> str:
    return dumps({"type": "error", **error.as_dict(), "ref": ref})
