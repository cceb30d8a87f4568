"""Every metric the service records, and the one function per fact that records it.

Instruments are created here on the global OpenTelemetry meter; `runtime.telemetry.setup` installs
the provider that exports them (Prometheus `/metrics`, OTLP). Before that, recording is a no-op, so
importing this module has no effect of its own. docs/observability.md describes each metric, the
alert that uses it and what to do.

Labels take only values from a fixed vocabulary (a method, an outcome class, a reason family, a
short error code): never an id, a phone or free text. Each metric is declared once, below, by the
helper of its kind; the helper derives the names Prometheus sees (the exporter appends `_total` to
counters and the unit to names), and `EXPOSED` collects them.

Counters start at zero (docs/observability.md, "Names"): `start_at_zero` names the series of a
counter that must exist at 0 from the process's start, so `increase()` and `rate()` see its first
event and dashboards show 0, not "No data". A vocabulary the runtime owns is declared here; a room
that owns one (the webhook's refusal reasons, Portmone's methods) declares its series where the
vocabulary lives. `telemetry.setup` creates them once the meter provider is installed (recording
before that is a no-op), and any declared later at once.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation, _Gauge

from payouts.escalation import reason_kind
from payouts.models import EscalationReason
from payouts.rejection import RejectionReason
from payouts.status import PayoutStatus

_meter = metrics.get_meter("payouts")
EXPOSED: set[str] = set()  # the Prometheus names of everything below

# Seconds: from a fast local answer to Portmone's read timeout and the 30 s callback alert.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
_CALLBACK_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_WORD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def _expose(name: str, unit: str | None, *suffixes: str) -> None:
    """The names Prometheus shows for an instrument: its name, the unit's word, then each suffix."""
    base = f"{name}_seconds" if unit == "s" else name
    EXPOSED.update({f"{base}{suffix}" for suffix in suffixes or ("",)})


def _counter(name: str, description: str) -> Counter:
    _expose(name, None, "_total")
    return _meter.create_counter(name, description=description)


def _histogram(name: str, description: str, buckets: Sequence[float]) -> Histogram:
    _expose(name, "s", "", "_bucket", "_count", "_sum")
    return _meter.create_histogram(
        name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
    )


def _gauge(name: str, description: str, unit: str | None = None) -> _Gauge:
    _expose(name, unit)
    return _meter.create_gauge(name, unit=unit or "", description=description)


def _observed_gauge(
    name: str, description: str, callback: Callable[[CallbackOptions], Iterable[Observation]], unit: str | None = None
) -> None:
    _expose(name, unit)
    _meter.create_observable_gauge(name, callbacks=[callback], unit=unit or "", description=description)


# ---- series that exist at 0 from the start ---------------------------------------------------------

Labels = Mapping[str, str]
_BORN: list[tuple[Counter, tuple[Labels, ...]]] = []
_born_live = False


def start_at_zero(counter: Counter, label_sets: Iterable[Labels] = ({},)) -> None:
    """Create these series of `counter` at 0 in this process (at telemetry setup, or now when it is
    done): the series an alert or dashboard reads, with each label value it selects."""
    sets = tuple(dict(labels) for labels in label_sets)
    _BORN.append((counter, sets))
    if _born_live:
        _add_zero(counter, sets)


def every(**vocabularies: Iterable[str]) -> list[dict[str, str]]:
    """Every combination of the label values: `every(endpoint=Endpoint, reason=Reason)`."""
    keys = list(vocabularies)
    values = [[str(value) for value in vocabulary] for vocabulary in vocabularies.values()]
    return [dict(zip(keys, combination, strict=True)) for combination in itertools.product(*values)]


def create_born_series() -> None:
    """Called by `runtime.telemetry.setup` once the meter provider is installed."""
    global _born_live
    _born_live = True
    for counter, sets in _BORN:
        _add_zero(counter, sets)


def _add_zero(counter: Counter, label_sets: Iterable[Labels]) -> None:
    for labels in label_sets:
        counter.add(0, dict(labels))


# ---- Portmone --------------------------------------------------------------------------------

PORTMONE_REQUESTS = _counter("portmone_request", "PortmoneDirect calls sent, by method")
PORTMONE_FAILS = _counter(
    "portmone_fail", "PortmoneDirect calls that did not answer ok, by Portmone's code, http_<status>, not_sent, unknown"
)
PORTMONE_DURATION = _histogram(
    "portmone_request_duration",
    "PortmoneDirect call duration, by method and outcome (answered_ok, answered_fail, not_sent, unknown)",
    _LATENCY_BUCKETS,
)
V1_FALLBACKS = _counter(
    "portmone_v1_fallback", "Portmone answers that fell back to protocol version 1, by source (method or callback)"
)
CALLBACK_LATENCY = _histogram(
    "portmone_callback_latency", "From Portmone's bills.create answer to its callback stored", _CALLBACK_BUCKETS
)
CALLBACKS = _counter("portmone_callbacks", "Portmone callbacks by result")
REDELIVERED = _counter("portmone_callbacks_redelivered", "Stored callbacks re-signalled by the sweep, by result")


def record_portmone_request(method: str) -> None:
    PORTMONE_REQUESTS.add(1, {"method": method})


def record_portmone_outcome(method: str, outcome: str, seconds: float, fail_code: str | None = None) -> None:
    """One call's end: its duration by outcome class, and its failure code when it did not answer ok."""
    PORTMONE_DURATION.record(max(seconds, 0.0), {"method": method, "outcome": outcome})
    if fail_code is not None:
        PORTMONE_FAILS.add(1, {"code": code_label(fail_code)})


def record_v1_fallback(source: str) -> None:
    V1_FALLBACKS.add(1, {"source": source})


def record_callback(result: str) -> None:
    CALLBACKS.add(1, {"result": result})


def record_redelivery(result: str) -> None:
    REDELIVERED.add(1, {"result": result})


def record_callback_latency(seconds: float) -> None:
    CALLBACK_LATENCY.record(max(seconds, 0.0))


# ---- payout outcomes: counted where the ledger records them ------------------------------------

PAYOUT_SUCCESS = _counter("payout_success", "Payouts that reached PAID")
PAYOUT_FAILURE = _counter(
    "payout_failure",
    "Payouts that ended without money (REJECTED, CANCELLED, FAILED) or went to MANUAL_REVIEW, by reason family",
)
PAYOUT_TIMEOUT = _counter("payout_timeout", "Payouts whose Portmone callback did not come within the callback timeout")


def record_payout_outcome(status: PayoutStatus, reason: str | None = None) -> None:
    """The one call for a payout outcome the ledger has just recorded: PAID is a success; REJECTED,
    CANCELLED, FAILED and an escalation to MANUAL_REVIEW are failures by reason family (an
    escalation for `callback_timeout` is also a timeout). Other statuses are no outcome."""
    if status == PayoutStatus.PAID:
        PAYOUT_SUCCESS.add(1)
        return
    if status not in _FAILURES:
        return
    PAYOUT_FAILURE.add(1, {"reason": reason_label(status, reason)})
    if status == PayoutStatus.MANUAL_REVIEW and reason_kind(reason) is EscalationReason.CALLBACK_TIMEOUT:
        record_timeout()


def record_timeout() -> None:
    PAYOUT_TIMEOUT.add(1)


_FAILURES = frozenset(
    {PayoutStatus.REJECTED, PayoutStatus.CANCELLED, PayoutStatus.FAILED, PayoutStatus.MANUAL_REVIEW}
)
OPERATOR = "operator"  # an operator's cancel: `operator:<their reason>`
# Every reason family a payout outcome can carry: the escalation reasons, the rejections, the operator.
REASON_FAMILIES = tuple(
    dict.fromkeys(
        [*(r.value for r in EscalationReason), *(r.value.partition(":")[0] for r in RejectionReason), OPERATOR]
    )
)
start_at_zero(PAYOUT_SUCCESS)
start_at_zero(PAYOUT_TIMEOUT)
start_at_zero(PAYOUT_FAILURE, every(reason=REASON_FAMILIES))


# ---- the rest of the payout path ---------------------------------------------------------------

LEDGER_UNAVAILABLE = _counter(
    "payout_ledger_unavailable",
    "Ledger activity attempts that failed because the ledger could not serve them (retried), by activity",
)
REMINDERS = _counter(
    "payout_manual_review_reminders", "Reminders sent for payouts waiting in manual review, by reason family"
)
RECONCILIATION_RUNS = _counter("payout_reconciliation_runs", "Reconciliation reports written")
ARCHIVE_PRUNED = _counter(
    "payout_archive_pruned_rows", "Exchange-archive rows deleted by the retention schedule"
)
RECONCILIATION_FINDINGS = _gauge(
    "payout_reconciliation_findings", "Findings of the latest reconciliation report, by bucket"
)
RECONCILIATION_LAST_RUN = _gauge(
    "payout_reconciliation_last_run_timestamp", "When this worker last wrote a reconciliation report (Unix time)", "s"
)


UNKNOWN_REASON = "unknown"
start_at_zero(REMINDERS, every(reason=[*(r.value for r in EscalationReason), UNKNOWN_REASON]))


def record_ledger_unavailable(activity: str) -> None:
    LEDGER_UNAVAILABLE.add(1, {"activity": activity})


def record_reminder(family: str) -> None:
    """`family`: the escalation reason's family (`permanent_error`), or `UNKNOWN_REASON`."""
    REMINDERS.add(1, {"reason": family})


def record_reconciliation(counts: dict[str, int]) -> None:
    for bucket, count in counts.items():
        RECONCILIATION_FINDINGS.set(count, {"bucket": bucket})
    RECONCILIATION_RUNS.add(1)
    RECONCILIATION_LAST_RUN.set(time.time())


def record_archive_pruned(rows: int) -> None:
    ARCHIVE_PRUNED.add(rows)


# ---- the outbox relay (notify.relay): payout events delivered to the user's chat and analytics ----

OUTBOX_DELIVERED = _counter("payout_outbox_delivered", "Payout events delivered, by channel")
OUTBOX_FAILED = _counter("payout_outbox_failed", "Payout event deliveries that failed (retried), by channel")
OUTBOX_PENDING = _gauge("payout_outbox_pending", "Payout events not yet delivered, by channel")
OUTBOX_OLDEST = _gauge("payout_outbox_oldest", "Age of the oldest undelivered payout event, by channel", "s")


def record_outbox_delivered(channel: str, count: int = 1) -> None:
    if count:
        OUTBOX_DELIVERED.add(count, {"channel": channel})


def record_outbox_failed(channel: str, count: int = 1) -> None:
    if count:
        OUTBOX_FAILED.add(count, {"channel": channel})


def set_outbox_backlog(channel: str, pending: int, oldest_age_seconds: float) -> None:
    OUTBOX_PENDING.set(pending, {"channel": channel})
    OUTBOX_OLDEST.set(max(oldest_age_seconds, 0.0), {"channel": channel})


# ---- the manual-review queue, read from the ledger by the worker ----------------------------------


@dataclass
class _Queue:
    size: int | None = None  # None until the first read
    oldest_since: datetime | None = None


_queue = _Queue()
_queue_lock = threading.Lock()


def set_manual_review_queue(size: int, oldest_since: datetime | None) -> None:
    """The latest reading of the manual-review queue (the worker refreshes it periodically)."""
    with _queue_lock:
        _queue.size, _queue.oldest_since = size, oldest_since


def _queue_size(_: CallbackOptions) -> Iterable[Observation]:
    with _queue_lock:
        return [] if _queue.size is None else [Observation(_queue.size)]


def _queue_oldest_age(_: CallbackOptions) -> Iterable[Observation]:
    with _queue_lock:
        if _queue.size is None:
            return []
        if _queue.oldest_since is None:
            return [Observation(0.0)]
        return [Observation(max((datetime.now(UTC) - _queue.oldest_since).total_seconds(), 0.0))]


_observed_gauge("payout_manual_review_queue_size", "Payouts waiting in MANUAL_REVIEW (from the ledger)", _queue_size)
_observed_gauge(
    "payout_manual_review_oldest_age",
    "How long the oldest payout in MANUAL_REVIEW has waited (from the ledger)",
    _queue_oldest_age,
    "s",
)


# ---- the webhook's HTTP requests -----------------------------------------------------------------

HTTP_DURATION = _histogram(
    "webhook_http_request_duration",
    "Webhook HTTP requests: duration by route template, method and status (its count is the request rate)",
    _LATENCY_BUCKETS,
)


def record_http_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_DURATION.record(
        max(seconds, 0.0),
        {"route": route, "method": method if method in _HTTP_METHODS else OTHER, "status": str(status)},
    )


# ---- webhook authentication ---------------------------------------------------------------------

AUTH_FAILURES = _counter("webhook_auth_failures", "Requests refused by authentication, by endpoint and reason")
SIGNATURES_VERIFIED = _counter(
    "webhook_signatures_verified", "Requests whose signature verified, by configured secret position"
)


def record_auth_failure(endpoint: str, reason: str) -> None:
    AUTH_FAILURES.add(1, {"endpoint": endpoint, "reason": reason})


def record_signature_verified(endpoint: str, secret: str) -> None:
    SIGNATURES_VERIFIED.add(1, {"endpoint": endpoint, "secret": secret})


# ---- the bot's queues (rabbit/) ----------------------------------------------------------------

QUEUE_MESSAGES = _counter(
    "payout_queue_messages",
    "receipt.accepted messages handled, by outcome (started, existing, ignored, dead_lettered, retried, failed)",
)
QUEUE_DEAD_LETTERS = _counter("payout_queue_dead_letters", "Messages put on the dead-letter queue, by reason")
QUEUE_RECONNECTS = _counter("payout_queue_reconnects", "Times the consumer lost the broker and connected again")
BONUS_EVENTS_PUBLISHED = _counter("payout_bonus_events_published", "Payout events confirmed by the broker, by kind")


def record_queue_message(outcome: str, dead_letter_reason: str | None = None) -> None:
    QUEUE_MESSAGES.add(1, {"outcome": outcome})
    if dead_letter_reason is not None:
        QUEUE_DEAD_LETTERS.add(1, {"reason": dead_letter_reason})


def record_queue_reconnect() -> None:
    QUEUE_RECONNECTS.add(1)


def record_bonus_event_published(kind: str) -> None:
    BONUS_EVENTS_PUBLISHED.add(1, {"kind": kind})


# ---- label vocabulary --------------------------------------------------------------------------


def code_label(code: str) -> str:
    """An error code as a label: Portmone's short code or ours (`http_503`, `not_sent`), else `other`."""
    return code if _CODE.match(code) else OTHER


def reason_label(status: PayoutStatus, reason: str | None) -> str:
    """A reason's family as a label: `permanent_error:30` → `permanent_error`, an operator's
    `operator:<free text>` → `operator`; anything that is not one of our words → `other`, and no
    reason at all → the status in lower case."""
    if not reason:
        return status.value.lower()
    family = reason.partition(":")[0]
    return family if _WORD.match(family) else OTHER
