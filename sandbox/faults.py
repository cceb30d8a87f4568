"""The sandbox's fault table: what goes wrong, how often, and how many more times.

JSON format (what `GET /_sandbox/faults` returns and `POST /_sandbox/faults` accepts):

    {
      "fail_codes": {"4": {"probability": 1.0, "times": 2}, "30": 0.5},
      "http_5xx": {"probability": 1.0, "times": 1, "status": 503},
      "latency_ms": {"probability": 1.0, "times": null, "ms": 300},
      "commit_then_hang": {"probability": 1.0, "times": 1},
      "drop_callback": null,
      "duplicate_callback": true,
      "out_of_order": 0.5,
      "callback_before_answer": null,
      "version1_fallback": null,
      "callback_status": "REJECTED",
      "callback_error_code": "4",
      "callback_verdicts": {"PAYED": 0.7, "REJECTED:4": 0.1, "REJECTED:30": 0.1, "RETURN": 0.1},
      "telegram_fail": {"probability": 1.0, "times": 1, "status": 429},
      "telecom_fail": {"probability": 1.0, "times": 1, "status": 503}
    }

A fault is an object `{"probability": 0..1 (default 1), "times": remaining count or null (unlimited)}`
or a shorthand: a number is the probability, `true` is probability 1, `null`/`false` turns it off.
`latency_ms` also takes a bare number of milliseconds (always applied). `callback_status` is the
status of the final callback (`PAYED` by default; `REJECTED` answers `fail` with
`callback_error_code`, `30` when not given). A fault whose `times` reaches 0 stays listed, inactive.

`callback_verdicts` (null = off) mixes the final callbacks: verdict -> weight (any non-negative
numbers, normalised; their sum must be positive). Each created bill gets one weighted choice from the
seeded random stream. A verdict is `PAYED`, `RETURN` (paid, then returned) or `REJECTED:<code>` with a
code of Portmone's error catalogue (portmone/protocol.py: transient 1-4, configuration 10-13,
permanent 20-30; bare `REJECTED` means `REJECTED:30`); words are matched case-insensitively and
listed in their canonical form. When set it overrides `callback_status`/`callback_error_code`.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portmone.protocol import ERROR_CATALOGUE

_FLAG_FAULTS = (
    "commit_then_hang",
    "drop_callback",
    "duplicate_callback",
    "out_of_order",
    "callback_before_answer",
    "version1_fallback",
)
FAULT_NAMES = (
    "fail_codes",
    "http_5xx",
    "latency_ms",
    *_FLAG_FAULTS,
    "callback_status",
    "callback_error_code",
    "callback_verdicts",
    "telegram_fail",
    "telecom_fail",
)
_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")
_STATUS_RE = re.compile(r"^[A-Za-z_]{1,32}$")
DEFAULT_REJECT_CODE = "30"
VERDICT_WORDS = ("PAYED", "REJECTED", "RETURN")
# Keys of the table that are not on/off faults.
_VALUE_KEYS = ("fail_codes", "callback_status", "callback_error_code", "callback_verdicts")


class FaultError(ValueError):
    """A fault specification that cannot be applied; the message says which part and why."""


@dataclass
class Fault:
    probability: float = 1.0
    times: int | None = None
    # Extra parameter of some kinds: milliseconds for latency_ms, the HTTP status for *_fail/http_5xx.
    value: int | None = None

    def active(self) -> bool:
        return self.probability > 0 and (self.times is None or self.times > 0)

    def roll(self, rng: random.Random) -> bool:
        """True when the fault fires now; a firing consumes one of `times`."""
        if not self.active():
            return False
        if self.probability < 1 and rng.random() >= self.probability:
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass(frozen=True)
class _Kind:
    value_key: str | None = None
    value_default: int | None = None
    value_range: tuple[int, int] | None = None
    bare_number_is_value: bool = False


_KINDS: dict[str, _Kind] = {
    "http_5xx": _Kind("status", 500, (500, 599)),
    "latency_ms": _Kind("ms", 0, (0, 600_000), bare_number_is_value=True),
    "telegram_fail": _Kind("status", 500, (400, 599)),
    "telecom_fail": _Kind("status", 503, (400, 599)),
    **{name: _Kind() for name in _FLAG_FAULTS},
}


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{where} must be a number")
    return float(value)


def _parse_fault(name: str, spec: object) -> Fault | None:
    kind = _KINDS.get(name, _Kind())
    if spec is None or spec is False:
        return None
    if spec is True:
        return Fault(1.0, None, kind.value_default)
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        if kind.bare_number_is_value:
            return _with_value(name, kind, Fault(1.0, None, None), spec)
        return Fault(_probability(spec, name), None, kind.value_default)
    if not isinstance(spec, Mapping):
        raise FaultError(f"{name}: expected an object, a number, true or null")
    allowed = {"probability", "times"} | ({kind.value_key} if kind.value_key else set())
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise FaultError(
            f"{name}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    fault = Fault(_probability(spec.get("probability", 1.0), f"{name}.probability"), None, kind.value_default)
    times = spec.get("times")
    if times is not None:
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            raise FaultError(f"{name}.times must be a non-negative integer or null")
        fault.times = times
    if kind.value_key and kind.value_key in spec:
        fault = _with_value(name, kind, fault, spec[kind.value_key])
    return fault


def _probability(value: object, where: str) -> float:
    number = _number(value, where)
    if not 0.0 <= number <= 1.0:
        raise FaultError(f"{where} must be between 0 and 1")
    return number


def _with_value(name: str, kind: _Kind, fault: Fault, raw: object) -> Fault:
    where = f"{name}.{kind.value_key}" if not kind.bare_number_is_value else name
    number = _number(raw, where)
    if number != int(number):
        raise FaultError(f"{where} must be a whole number")
    low, high = kind.value_range or (0, 0)
    if not low <= number <= high:
        raise FaultError(f"{where} must be between {low} and {high}")
    fault.value = int(number)
    return fault


def _fault_json(fault: Fault | None, name: str) -> dict[str, Any] | None:
    if fault is None:
        return None
    out: dict[str, Any] = {"probability": fault.probability, "times": fault.times}
    key = _KINDS.get(name, _Kind()).value_key
    if key:
        out[key] = fault.value
    return out


@dataclass
class FaultTable:
    fail_codes: dict[str, Fault] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    callback_status: str = "PAYED"
    callback_error_code: str | None = None
    # Canonical verdict ("PAYED", "RETURN", "REJECTED:<code>") -> weight as given; None: off.
    callback_verdicts: dict[str, float] | None = None

    # -- parsing -----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, spec: object) -> FaultTable:
        """A new table from the JSON format above (everything not given is off)."""
        return cls().merged(spec)

    def merged(self, spec: object) -> FaultTable:
        """A copy with the given keys replaced (`fail_codes` replaced as a whole); raises FaultError
        and leaves this table untouched when anything in `spec` is wrong."""
        if not isinstance(spec, Mapping):
            raise FaultError("faults must be a JSON object")
        unknown = sorted(str(k) for k in spec if k not in FAULT_NAMES)
        if unknown:
            raise FaultError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULT_NAMES)}")
        table = copy.deepcopy(self)
        for name, value in spec.items():
            if name == "fail_codes":
                table.fail_codes = _parse_fail_codes(value)
            elif name == "callback_status":
                if value is None:
                    table.callback_status = "PAYED"
                elif not isinstance(value, str) or not _STATUS_RE.match(value):
                    raise FaultError("callback_status must be a status word such as PAYED or REJECTED")
                else:
                    table.callback_status = value.upper()
            elif name == "callback_error_code":
                if value is not None and (not isinstance(value, str) or not _CODE_RE.match(value)):
                    raise FaultError('callback_error_code must be a short code string such as "4" or null')
                table.callback_error_code = value
            elif name == "callback_verdicts":
                table.callback_verdicts = _parse_verdicts(value)
            else:
                parsed = _parse_fault(name, value)
                if parsed is None:
                    table.faults.pop(name, None)
                else:
                    table.faults[name] = parsed
        return table

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fail_codes": {code: _fault_json(f, "fail_codes") for code, f in sorted(self.fail_codes.items())}
        }
        for name in FAULT_NAMES:
            if name in _VALUE_KEYS:
                continue
            out[name] = _fault_json(self.faults.get(name), name)
        out["callback_status"] = self.callback_status
        out["callback_error_code"] = self.callback_error_code
        out["callback_verdicts"] = dict(self.callback_verdicts) if self.callback_verdicts is not None else None
        return out

    # -- rolling -----------------------------------------------------------------------------

    def roll(self, name: str, rng: random.Random) -> Fault | None:
        """The fault `name` when it fires now (consuming one of its `times`), else None."""
        if name not in _KINDS:
            raise KeyError(name)
        fault = self.faults.get(name)
        if fault is not None and fault.roll(rng):
            return fault
        return None

    def roll_fail_code(self, rng: random.Random) -> str | None:
        for code in sorted(self.fail_codes):
            if self.fail_codes[code].roll(rng):
                return code
        return None

    def final_callback(self) -> tuple[str, str | None]:
        """The status of the final callback and, for REJECTED, its error code (from `callback_status`)."""
        if self.callback_status == "REJECTED":
            return self.callback_status, self.callback_error_code or DEFAULT_REJECT_CODE
        return self.callback_status, None

    def choose_verdict(self, rng: random.Random) -> tuple[str, str | None]:
        """The fate of one created bill: (status, error code for REJECTED). With `callback_verdicts`
        one weighted choice from `rng` (always exactly one draw); else `callback_status` (no draw)."""
        if self.callback_verdicts is None:
            return self.final_callback()
        weighted = [(v, w) for v, w in sorted(self.callback_verdicts.items()) if w > 0]
        point = rng.random() * sum(w for _, w in weighted)
        chosen = weighted[-1][0]
        for verdict, weight in weighted:
            if point < weight:
                chosen = verdict
                break
            point -= weight
        return split_verdict(chosen)


def verdict_label(status: str, error_code: str | None) -> str:
    """The canonical verdict of a final callback: `PAYED`, `RETURN`, `REJECTED:<code>`, or the word."""
    return f"{status}:{error_code or DEFAULT_REJECT_CODE}" if status == "REJECTED" else status


def split_verdict(verdict: str) -> tuple[str, str | None]:
    status, _, code = verdict.partition(":")
    return (status, code or DEFAULT_REJECT_CODE) if status == "REJECTED" else (status, None)


def _parse_verdicts(value: object) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise FaultError(
            'callback_verdicts must be a non-empty object of verdict -> weight, e.g. {"PAYED": 0.9, "REJECTED:4": 0.1}'
        )
    out: dict[str, float] = {}
    for key, weight in value.items():
        verdict = _canonical_verdict(key)
        if verdict in out:
            raise FaultError(f"callback_verdicts: {verdict} is given twice")
        where = f"callback_verdicts.{verdict}"
        number = _number(weight, where)
        if number < 0:
            raise FaultError(f"{where} must not be negative")
        out[verdict] = number
    if sum(out.values()) <= 0:
        raise FaultError("callback_verdicts: the weights must add up to more than 0")
    return out


def _canonical_verdict(key: object) -> str:
    text = str(key)[:40]
    word, colon, code = text.partition(":")
    word = word.strip().upper()
    code = code.strip()
    if word not in VERDICT_WORDS:
        raise FaultError(
            f"callback_verdicts: unknown verdict {text!r}; use PAYED, RETURN or REJECTED:<code>"
        )
    if word != "REJECTED":
        if colon:
            raise FaultError(f"callback_verdicts: {word} takes no error code ({text!r})")
        return word
    if colon and code not in ERROR_CATALOGUE:
        known = ", ".join(sorted(ERROR_CATALOGUE, key=lambda c: (len(c), c)))
        raise FaultError(
            f"callback_verdicts: {text!r}: error code {code!r} is not in Portmone's error catalogue ({known})"
        )
    return f"REJECTED:{code if colon else DEFAULT_REJECT_CODE}"


def _parse_fail_codes(value: object) -> dict[str, Fault]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FaultError("fail_codes must be an object of code -> fault")
    out: dict[str, Fault] = {}
    for code, spec in value.items():
        if not isinstance(code, str) or not _CODE_RE.match(code):
            raise FaultError(f"fail_codes: {str(code)[:20]!r} is not a valid error code")
        fault = _parse_fault(f"fail_codes.{code}", spec)
        if fault is not None:
            out[code] = fault
    return out
