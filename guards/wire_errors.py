"""Pydantic validation errors of the wire types phrased for people, for the server and the SDK.

One table from pydantic's error `type` to a sentence naming the field ("expression is blank",
"policy.min_conf is not a known field"), so the server's 422 `errors[].msg` and the SDK's
local `InvalidRequest` say the same thing; `loc` and `type` stay as pydantic gives them.

Example:
    >>> human_message({"type": "extra_forbidden", "loc": ("min_conf",)}, within="policy")
    'policy.min_conf is not a known field'
    >>> human_message({"type": "less_than_equal", "loc": ("min_confidence",), "ctx": {"le": 1}})
    'min_confidence must be at most 1'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# {name} is the field's dotted path; the other names come from pydantic's error `ctx`.
_PHRASES: dict[str, str] = {
    "missing": "{name} is required",
    "extra_forbidden": "{name} is not a known field",
    "string_too_short": "{name} is shorter than {min_length} characters",
    "string_too_long": "{name} is longer than {max_length} characters",
    "string_type": "{name} must be a string",
    "bool_type": "{name} must be true or false",
    "bool_parsing": "{name} must be true or false",
    "int_type": "{name} must be a whole number",
    "int_parsing": "{name} must be a whole number",
    "int_from_float": "{name} must be a whole number",
    "float_type": "{name} must be a number",
    "float_parsing": "{name} must be a number",
    "finite_number": "{name} must be a finite number",
    "dict_type": "{name} must be a JSON object",
    "model_type": "{name} must be a JSON object",
    "model_attributes_type": "{name} must be a JSON object",
    "list_type": "{name} must be a list",
    "literal_error": "{name} must be one of {expected}",
    "greater_than": "{name} must be more than {gt}",
    "greater_than_equal": "{name} must be at least {ge}",
    "less_than": "{name} must be less than {lt}",
    "less_than_equal": "{name} must be at most {le}",
}

# Parts of a FastAPI loc that say where the field came from, not which field it is.
_SOURCES = {"body", "query", "header", "path", "cookie"}


def _name(loc: Iterable[Any], within: str | None) -> str:
    """The dotted field path of a loc, without FastAPI's body/query prefix."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join([within, *parts] if within else parts) or within or "the request"


def human_message(error: Mapping[str, Any], *, within: str | None = None) -> str:
    """One pydantic error as a sentence naming the field; `within` prefixes the field path."""
    name = _name(error.get("loc", ()), within)
    # 1.0 reads as 1: the bounds are floats in the model, whole numbers to a person.
    ctx = {
        key: int(value) if isinstance(value, float) and value.is_integer() else value
        for key, value in (error.get("ctx") or {}).items()
    }
    kind = str(error.get("type", ""))
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == r"\S":
        return f"{name} is blank"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{name} is empty"
    phrase = _PHRASES.get(kind)
    if phrase is not None:
        try:
            return phrase.format(name=name, **ctx)
        except (KeyError, IndexError):  # a ctx without the number the phrase names
            pass
    msg = str(error.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # A validator's own message already names its field ("expression is blank").
    return msg if msg.startswith(name.rsplit(".", 1)[-1]) else f"{name}: {msg}"


def readable_errors(
    errors: Iterable[Mapping[str, Any]], *, within: str | None = None
) -> list[dict[str, Any]]:
    """Errors as {loc, msg, type}: msg phrased for people, never the (possibly huge) input."""
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": human_message(e, within=within),
            "type": e.get("type"),
        }
        for e in errors
    ]
