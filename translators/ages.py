"""Ages instead of dates (data minimisation) for the FHIR -> Phenopacket translator.

Rule: every date of a patient's life leaves the gateway only as the patient's age in whole
completed years at that moment, as an ISO 8601 duration (`P34Y`). Partial FHIR dates are read so
that the age is never overstated: a birth date missing its month/day is taken as the *last* day
it can stand for (1977 -> 1977-12-31), an event date missing them as the *first* (2016 -> 2016-01-01).
Times of day and time zones are ignored (a date is enough for whole years).
"""

from __future__ import annotations

import calendar
import re
from datetime import date

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_fhir_date(value: object, *, latest: bool) -> date | None:
    """The date of a FHIR date/dateTime/instant string; `latest` fills missing parts upward."""
    if not isinstance(value, str):
        return None
    match = _DATE_RE.match(value.strip())
    if not match:
        return None
    year = int(match.group(1))
    month = int(match.group(2)) if match.group(2) else (12 if latest else 1)
    if not 1 <= month <= 12:
        return None
    if match.group(3):
        day = int(match.group(3))
    else:
        day = calendar.monthrange(year, month)[1] if latest else 1
    try:
        return date(year, month, day)
    except ValueError:
        return None


def whole_years(birth: date, at: date) -> int:
    years = at.year - birth.year
    if (at.month, at.day) < (birth.month, birth.day):
        years -= 1
    return years


def age_element(years: int) -> dict:
    """A Phenopacket TimeElement holding an age."""
    return {"age": {"iso8601duration": f"P{years}Y"}}


_UCUM_YEARS = {"a": 1, "yr": 1, "year": 1, "years": 1}
_UCUM_DURATION = {"a": "Y", "mo": "M", "wk": "W", "d": "D", "yr": "Y", "year": "Y", "years": "Y", "month": "M"}


def fhir_age_to_iso(age: dict) -> str | None:
    """A FHIR Age (Quantity) as an ISO 8601 duration: whole units, None when not convertible."""
    if not isinstance(age, dict):
        return None
    value = age.get("value")
    unit = age.get("code") or age.get("unit")
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return None
    letter = _UCUM_DURATION.get(str(unit).lower()) if unit else None
    if letter is None:
        return None
    return f"P{int(value)}{letter}"
