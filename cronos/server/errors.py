"""The server's answers to what goes wrong: one JSON object ``{"error": ...}`` whose message names
the field, the limit or the option, for bad input, and for failures of its own.

    raise Refused(413, "65 texts; at most 64 in one request")
    status, message = validation_message(errors, TranslateRequest)    # pydantic's errors, as one line
    app.add_middleware(ContainedErrors)                               # anything unforeseen: a JSON 500
"""
from __future__ import annotations

import json
import logging
from typing import Sequence

from .bodies import Strict

__all__ = ["Refused", "validation_message", "ContainedErrors", "EXAMPLE", "NOT_JSON", "NOT_SENT_AS_JSON"]

logger = logging.getLogger("cronos")

EXAMPLE = '{"text": "..."}'
NOT_JSON = f"the body is not JSON; send a JSON object such as {EXAMPLE}"
NOT_SENT_AS_JSON = ("send the body as JSON, with the header content-type: application/json "
                    "(curl: -H 'content-type: application/json')")
SHOWN_FIELDS = 5  # unknown fields named in a message, at most


class Refused(Exception):
    """A request answered with an error: ``status`` and one message (and headers)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def validation_message(errors: Sequence[dict], body: type[Strict] | None) -> tuple[int, str]:
    """Status and one message for pydantic's errors: 400 when the body is not JSON, else 422 naming
    each wrong field (unknown fields together, in one clause)."""
    if any(error["type"] == "json_invalid" for error in errors):
        return 400, NOT_JSON
    unknown = [error for error in errors if error["type"] == "extra_forbidden"]
    messages = [_message(error, body) for error in errors if error["type"] != "extra_forbidden"][:3]
    if unknown:
        messages.append(_unknown_fields(unknown, body))
    return 422, "; ".join(dict.fromkeys(messages))


def _message(error: dict, body: type[Strict] | None) -> str:
    where = _where(error)
    field = ".".join(where)
    if error["type"] == "value_error":  # cronos's own checks: the message names its field
        message = str(error["ctx"]["error"])
        return message if not field or message.startswith(field.split(".")[0]) else f"{field}: {message}"
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"{field}: expected a JSON object" if where else f"the body must be a JSON object such as {EXAMPLE}"
    if not where:
        return f"the body must be a JSON object such as {EXAMPLE}"
    return f"{field}: {error['msg']}"


def _unknown_fields(errors: list[dict], body: type[Strict] | None) -> str:
    """All unknown fields in one clause: the first few named, the fields there are said once."""
    names = [".".join(_where(error)) for error in errors]
    shown = ", ".join(names[:SHOWN_FIELDS]) + (f" and {len(names) - SHOWN_FIELDS} more" if len(names) > SHOWN_FIELDS
                                               else "")
    fields = ", ".join(_fields(body, _where(errors[0])[:-1]))
    return f"unknown field{'s' if len(names) > 1 else ''} {shown}; the fields are {fields}"


def _where(error: dict) -> list[str]:
    return [str(part) for part in error["loc"][1:] if part not in ("str", "list[str]")]


def _fields(body: type[Strict] | None, path: list[str]) -> list[str]:
    """The field names of the (nested) object at ``path`` of ``body``."""
    model = body
    for name in path:
        if model is None or name not in model.model_fields:
            return []
        annotation = model.model_fields[name].annotation
        model = next((t for t in (annotation, *getattr(annotation, "__args__", ())) if isinstance(t, type)
                      and issubclass(t, Strict)), None)
    return list(model.model_fields) if model is not None else []


class ContainedErrors:
    """ASGI middleware: an error no route foresaw is answered as a JSON 500 and logged in one line,
    not a plain-text 500 with a traceback per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as error:  # noqa: BLE001 - the last place an error can still be answered
            logger.error("server: %s %s failed: %s: %s", scope.get("method"), scope.get("path"),
                         type(error).__name__, error)
            if started:
                raise
            body = json.dumps({"error": f"the server failed: {type(error).__name__}: {error}"}).encode("utf-8")
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
