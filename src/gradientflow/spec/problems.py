"""Problem messages: one pydantic error or TOML syntax error as "`dotted.key`: <value> <what is allowed>".

Values are shown as the TOML the user wrote (arrays as lists) and cut to `MAX_SHOWN_CHARS`, so a
200,000-character value gives a readable line, not a 200,000-character one.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from typing import Any, get_args

from pydantic import BaseModel

__all__ = ["MAX_SHOWN_CHARS", "shown", "type_name", "format_error", "suggest", "toml_problem"]

#: The longest bad value a message prints in full; longer ones are cut, with their length.
MAX_SHOWN_CHARS = 80

_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a table",
    "model_type": "a table",
    "tuple_type": "an array",
    "list_type": "an array",
}
_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def shown(value: Any) -> str:
    """Return ``repr(value)``, cut to `MAX_SHOWN_CHARS` characters with a note of the full length."""
    text = repr(value)
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[: MAX_SHOWN_CHARS - 20]}... ({len(text):,} characters)"


def type_name(value: Any) -> str:
    """Return the TOML-flavoured name of `value`'s type: 'an integer', 'a table', ..."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names.update({list: "an array", tuple: "an array", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def suggest(value: Any, allowed: list[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest allowed name, or '' when none is close."""
    close = difflib.get_close_matches(str(value)[:200], allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_location(location: tuple[Any, ...], prefix: str = "") -> str:
    keys = [str(part) for part in location if isinstance(part, str)]
    indexes = "".join(f"[{part}]" for part in location if isinstance(part, int))
    dotted = ".".join(filter(None, [prefix, *keys]))
    return f"`{dotted}`{indexes}" if dotted else f"(top level){indexes}"


def _annotation_at(cls: type[BaseModel], location: tuple[Any, ...]) -> Any:
    """The type annotation of the field at `location` (string parts only), or None."""
    annotation: Any = cls
    for part in location:
        if isinstance(part, int):
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = annotation.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _keys_at(cls: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    parent = _annotation_at(cls, location[:-1])
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        return list(parent.model_fields)
    return []


def format_error(error: Any, root: type[BaseModel], prefix: str = "", where: str | None = None) -> str:
    """Return one pydantic error as "`dotted.key`: <bad value> <what is wrong, what is allowed>"."""
    location = tuple(error["loc"])
    where = where or _format_location(location, prefix)
    if len(where) > MAX_SHOWN_CHARS:  # a 100,000-character key is cut like a value
        where = f"{where[: MAX_SHOWN_CHARS - 20]}... ({len(where):,} characters)"
    kind, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    value = list(value) if isinstance(value, tuple) else value  # shown as the TOML array it was
    if kind == "extra_forbidden":
        allowed = _keys_at(root, location)
        section = ".".join(filter(None, [prefix, *map(str, location[:-1])]))
        scope = f"keys of [{section}]" if section else "top-level keys"
        return f"{where}: unknown key{suggest(location[-1], allowed)}; {scope} are {', '.join(allowed)}"
    if kind == "literal_error":
        allowed = [str(option) for option in get_args(_annotation_at(root, location)) or ()]
        if not allowed:  # an element type, e.g. inside a tuple: fall back on pydantic's wording
            return f"{where}: {shown(value)} is not one of {context.get('expected', '?')}"
        return f"{where}: {shown(value)} is not one of {', '.join(allowed)}{suggest(value, allowed)}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind in _EXPECTED:
        return f"{where}: {shown(value)} is {type_name(value)}, expected {_EXPECTED[kind]}"
    if kind in _BOUNDS:
        symbol, name = _BOUNDS[kind]
        return f"{where}: {shown(value)} is out of range: must be {symbol} {context[name]:g}"
    if kind in ("too_short", "too_long"):
        length = context.get("actual_length")
        limit = context.get("min_length") if kind == "too_short" else context.get("max_length")
        bound = "at least" if kind == "too_short" else "at most"
        return f"{where}: {shown(value)} has {length} items, must have {bound} {limit}"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {shown(value)} is invalid: {message[:1].lower()}{message[1:]}"


def toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """Return a TOML syntax error as 'invalid TOML at line L, column C: <reason>: <the line>'."""
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if not match:
        return f"invalid TOML: {message}"
    line_number, column = int(match.group(1)), int(match.group(2))
    reason = message[: match.start()].strip()
    lines = text.splitlines()
    line = lines[line_number - 1] if 0 < line_number <= len(lines) else ""
    return f"invalid TOML at line {line_number}, column {column}: {reason}: {shown(line.strip())}"
