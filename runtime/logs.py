"""Log lines: one switch (`TELEMETRY_LOG_FORMAT`) between readable text and JSON lines.

Either way, a line about a payout carries its correlation ids (runtime.log_context) as fields: JSON
keys, or `key=value` pairs after the text. Temporal's activity and workflow loggers give their
workflow's ids the same way; their information is a field, not appended to the message, and the
workflow logger stays quiet while a workflow replays (the SDK's default), so nothing is logged twice.
"""

from __future__ import annotations

import logging
from typing import Literal

from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow

from runtime.log_context import IDS, current_ids, ids_of_workflow

LogFormat = Literal["text", "json"]
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that say too much at INFO: httpx logs every request URL, and Telegram's URL holds the bot token.
_QUIET = ("httpx", "httpcore")


class PayoutIdsFilter(logging.Filter):
    """Puts the current payout ids on each record (ids already given in `extra` win), and the ids
    of the workflow Temporal's loggers name."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        for extra in ("temporal_activity", "temporal_workflow"):
            info = getattr(record, extra, None)
            if isinstance(info, dict) and info.get("workflow_id"):
                ids = {**ids_of_workflow(str(info["workflow_id"])), **ids}
        for name, value in ids.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = " ".join(f"{name}={getattr(record, name)}" for name in IDS if hasattr(record, name))
        return f"{text} [{pairs}]" if pairs else text


def formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
            json_default=str,
        )
    return _TextFormatter(_TEXT)


def configure_logging(level: str | int = "INFO", fmt: LogFormat = "text") -> None:
    """The root handler for a process: the chosen format, payout ids on every line."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(PayoutIdsFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a Python warning is a log line too, in the same format
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # The workflow and activity ids become fields (the filter above), not text appended to messages.
    activity.logger.activity_info_on_message = fmt == "text"
    workflow.logger.workflow_info_on_message = fmt == "text"

