"""The `payouts` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import ValidationError

from payouts.logs import LogFormat, configure_logging
from payouts.settings import ConfigError, Settings, TelemetrySettings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="payouts", description="Receipt payouts through PortmoneDirect.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["text", "json"], default=None,
                   help="log lines as text or JSON (default: TELEMETRY_LOG_FORMAT, else text)")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole stack locally on embedded defaults")
    dev.add_argument("--demo", type=int, default=0, metavar="N", help="also submit N sample receipts")
    dev.add_argument("--data-dir", type=Path, default=Path(".data"))
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.add_argument("--webhook-port", type=int, default=8080)
    dev.add_argument("--sandbox-port", type=int, default=8099)
    dev.add_argument("--metrics-port", type=int, default=9464, help="the workers' /metrics")

    sub.add_parser("worker", help="run the payout and notification workers")
    sub.add_parser("webhook", help="run the HTTP service (intake, Portmone callbacks, health)")
    sub.add_parser("migrate", help="bring the ledger schema to the latest revision")

    sb = sub.add_parser("sandbox", help="run the PortmoneDirect / Telegram / telecom simulator")
    sb.add_argument("--host", default=None)
    sb.add_argument("--port", type=int, default=None)
    sb.add_argument("--seed", type=_seed, default=None, help="seed of every random choice (default: SANDBOX_SEED)")

    sm = sub.add_parser("submit", help="send one accepted receipt to a running stack")
    sm.add_argument("--receipt-id", required=True)
    sm.add_argument("--telegram-id", type=int, required=True)
    phone = sm.add_mutually_exclusive_group(required=True)
    phone.add_argument("--msisdn", help="phone number (encrypted by the webhook at once)")
    phone.add_argument("--msisdn-token", help="an already encrypted phone token")
    sm.add_argument("--amount-kopecks", type=int, required=True)
    sm.add_argument("--currency", default="UAH")
    sm.add_argument("--payee-id")
    sm.add_argument("--fiscal-key")
    sm.add_argument("--webhook-url", default=None, help="default: http://WEBHOOK_HOST:WEBHOOK_PORT")

    from console.ops.cli import add_parsers as add_ops_parsers

    add_ops_parsers(sub)  # `payouts ops …` and `payouts schedules`
    return p


def _log_format_setting() -> LogFormat:
    """TELEMETRY_LOG_FORMAT (environment or .env); an invalid value is reported with the other settings."""
    try:
        return TelemetrySettings().log_format
    except ValidationError:
        return "text"


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format or _log_format_setting())
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("ops", "schedules"):
        from console.ops.cli import run as run_ops

        return run_ops(args)
    if args.command == "dev":
        from console.dev import run_dev

        return asyncio.run(
            run_dev(
                data_dir=args.data_dir.resolve(),
                temporal_port=args.temporal_port,
                ui_port=args.ui_port,
                webhook_port=args.webhook_port,
                sandbox_port=args.sandbox_port,
                demo=args.demo,
                metrics_port=args.metrics_port,
            )
        )
    settings = load_settings()
    if args.command == "worker":
        from workers.main import run_worker

        asyncio.run(run_worker(settings))
        return 0
    if args.command == "webhook":
        from webhook.app import run_webhook

        asyncio.run(run_webhook(settings))
        return 0
    if args.command == "migrate":
        from ledger import upgrade

        upgrade(settings.ledger.url)
        print(f"ledger at head: {_safe_url(settings.ledger.url)}")
        return 0
    if args.command == "sandbox":
        from sandbox.app import run_sandbox
        from sandbox.config import SandboxConfig

        run_sandbox(
            SandboxConfig.from_settings(settings, seed=args.seed),
            args.host or settings.sandbox.host,
            args.port if args.port is not None else settings.sandbox.port,
        )
        return 0
    if args.command == "submit":
        return _submit(args, settings)
    raise AssertionError(args.command)


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    url = args.webhook_url or f"http://{settings.webhook.host}:{settings.webhook.port}"
    body: dict[str, object] = {
        "receipt_id": args.receipt_id,
        "telegram_id": args.telegram_id,
        "amount_kopecks": args.amount_kopecks,
        "currency": args.currency,
        "accepted_at": datetime.now(UTC).isoformat(),
    }
    for key in ("msisdn", "msisdn_token", "payee_id", "fiscal_key"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    token = settings.webhook.intake_token.get_secret_value()
    if not token and httpx.URL(url).host in {"127.0.0.1", "localhost"}:
        from payouts.devdefaults import DEV_INTAKE_TOKEN

        token = DEV_INTAKE_TOKEN  # a local `payouts dev` stack
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if settings.webhook.intake_secret_list():  # signed intake (docs/security.md)
        from payouts.signing import signature_headers

        headers.update(signature_headers(settings.webhook.intake_secret_list()[:1], raw))
    try:
        resp = httpx.post(f"{url}/v1/receipts/accepted", content=raw, headers=headers)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the webhook at {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if resp.status_code != 202:
        print(f"error: HTTP {resp.status_code}: {resp.text}", file=sys.stderr)
        return 1
    print(json.dumps(resp.json()))
    return 0


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
