"""FHIR token search values (search.html#token), as a conditional reference `Type?identifier=…` writes them.

    value          the value in any system
    |value         the value, in an identifier without system
    system|value   the value in that system
    system|        any value in that system

A `\\` escapes `|`, `,`, `$` and itself (search.html#escaping), so a value holding a bar can be named
(`system|A\\|B`). An unescaped `,` (a list of values: OR) or `$` (a composite) names no single identifier:
a conditional reference names one resource, so such a token is not read (None).
"""

from __future__ import annotations

from dataclasses import dataclass

ESCAPED = ",$|\\"


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system; "": explicitly none
    value: str | None  # None: any value (`system|`)

    def written(self) -> str:
        """The token as a search value, escaped (the inverse of `parse_token`)."""
        value = _escape(self.value or "")
        return value if self.system is None else f"{_escape(self.system)}|{value}"


def parse_token(text: str) -> Token | None:
    """The token `text` names; None when it names no single identifier (empty, a list, a composite, two bars)."""
    parts: list[str] = [""]
    escaped = False
    for char in text:
        if escaped:
            parts[-1] += char if char in ESCAPED else "\\" + char  # a stray backslash is itself
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            parts.append("")
        elif char in ",$":
            return None
        else:
            parts[-1] += char
    if escaped:
        parts[-1] += "\\"
    if len(parts) == 1:
        return Token(None, parts[0]) if parts[0] else None
    if len(parts) > 2 or not any(parts):
        return None
    system, value = parts
    return Token(system, value or None)


def _escape(text: str) -> str:
    return "".join("\\" + c if c in ESCAPED else c for c in text)
