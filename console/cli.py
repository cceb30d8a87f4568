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
from pydantic import SecretStr, ValidationError

from console.devstate import DEFAULT_DATA_DIR, DEFAULT_PORTS, add_dev_arguments, use_dev_stack
from console.ending import end
from console.reach import (
    Unreachable,
    cause_of,
    is_database_down,
    is_temporal_connect_failure,
    ledger_problem,
    rabbit_problem,
    safe_url,
    temporal_problem,
    webhook_problem,
)
from runtime.logs import LogFormat, configure_logging
from runtime.settings import ConfigError, Settings, TelemetrySettings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="payouts", description="Receipt payouts through PortmoneDirect.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["text", "json"], default=None,
                   help="log lines as text or JSON (default: TELEMETRY_LOG_FORMAT, else text)")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole stack locally on embedded defaults")
    dev.add_argument("--demo", type=int, default=0, metavar="N", help="also submit N sample receipts")
    dev.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                     help="Temporal's and the ledger's files, the log, and dev-stack.json (what --dev reads)")
    dev.add_argument("--temporal-port", type=int, default=DEFAULT_PORTS["temporal"])
    dev.add_argument("--ui-port", type=int, default=DEFAULT_PORTS["ui"])
    dev.add_argument("--webhook-port", type=int, default=DEFAULT_PORTS["webhook"],
                     help="the webhook's public listener: Portmone's callbacks (default %(default)s)")
    dev.add_argument("--internal-port", type=int, default=DEFAULT_PORTS["internal"],
                     help="the webhook's internal listener: intake, codec, health, metrics (default %(default)s)")
    dev.add_argument("--sandbox-port", type=int, default=DEFAULT_PORTS["sandbox"])
    dev.add_argument("--metrics-port", type=int, default=9464, help="the workers' /metrics")

    sub.add_parser("worker", help="run the payout and notification workers")
    sub.add_parser("webhook", help="run the HTTP service: Portmone callbacks on WEBHOOK_PORT; intake, "
                                  "codec, health and metrics on WEBHOOK_INTERNAL_PORT")
    sub.add_parser("migrate", help="bring the ledger schema to the latest revision")
    sub.add_parser("consumer", help="start payouts from the bot's RabbitMQ queue (receipt.accepted)")

    pb = sub.add_parser("publish", help="put sample receipt.accepted messages on the queue (development)")
    pb.add_argument("--count", type=int, default=1, help="good messages to publish (default 1)")
    pb.add_argument("--status", default="accepted", help="the good messages' status (default accepted)")
    pb.add_argument(
        "--bad", action="append", default=[], metavar="KIND",
        help="also one bad message of this kind (repeatable): all, " + ", ".join(_bad_kinds()),
    )

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
    sm.add_argument("--webhook-url", default=None,
                    help="the webhook's internal listener (default: the dev stack's with --dev, "
                         "else http://WEBHOOK_INTERNAL_HOST:WEBHOOK_INTERNAL_PORT)")
    add_dev_arguments(sm)

    from console.ops.cli import add_parsers as add_ops_parsers

    add_ops_parsers(sub)  # `payouts ops …` and `payouts schedules`
    return p


def _bad_kinds() -> list[str]:
    from rabbit.contract import DeadLetterReason

    return [reason.value for reason in DeadLetterReason]


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def _log_format_setting() -> LogFormat:
    """TELEMETRY_LOG_FORMAT (environment or .env); an invalid value is reported with the other settings."""
    try:
        return TelemetrySettings().log_format
    except ValidationError:
        return "text"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format or _log_format_setting())
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print("\n".join(f"error: {problem}" for problem in exc.problems), file=sys.stderr)
        return end(1)  # a Temporal client may have been made: no interpreter teardown
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("ops", "schedules"):
        from console.ops.cli import run as run_ops

        return run_ops(args)
    if args.command in ("dev", "sandbox"):
        _require_dev_tools(args.command)
    if args.command == "dev":
        from console.dev import run_dev

        return end(asyncio.run(  # a Temporal client was made: no interpreter teardown
            run_dev(
                data_dir=args.data_dir.resolve(),
                temporal_port=args.temporal_port,
                ui_port=args.ui_port,
                webhook_port=args.webhook_port,
                internal_port=args.internal_port,
                sandbox_port=args.sandbox_port,
                demo=args.demo,
                metrics_port=args.metrics_port,
            )
        ))
    if args.command == "submit" and args.dev:
        use_dev_stack(args.data_dir)
    settings = load_settings()
    if args.command in ("worker", "webhook", "consumer"):
        return _serve(args.command, settings)
    if args.command == "publish":
        return _publish(args, settings)
    if args.command == "migrate":
        from ledger import upgrade

        try:
            upgrade(settings.ledger.url)
        except Exception as exc:
            if is_database_down(exc):
                raise Unreachable([ledger_problem(settings.ledger.url, cause_of(exc))]) from None
            raise
        print(f"ledger at head: {safe_url(settings.ledger.url)}")
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


def _require_dev_tools(command: str) -> None:
    """`payouts dev` and `payouts sandbox` need the sandbox (and `dev` the Temporal CLI): dev tools, which
    a checkout's `pip install -e .` has and the image has not (docs/deploy.md)."""
    import importlib.util

    if importlib.util.find_spec("sandbox") is None:
        raise SystemExit(f"error: `payouts {command}` needs the sandbox, a dev tool that this installation "
                         "(the runtime image) leaves out; run it from a checkout: pip install -e .")


def _serve(command: str, settings: Settings) -> int:
    """`payouts worker` / `webhook` / `consumer`: each connects to Temporal first, and stops when it does not answer."""
    from rabbit.main import run_consumer
    from webhook.app import run_webhook
    from workers.main import run_worker

    serve = {"worker": run_worker, "webhook": run_webhook, "consumer": run_consumer}[command]
    if command == "consumer":
        from console.queue_series import start_queue_series_at_zero

        start_queue_series_at_zero()
    try:
        asyncio.run(serve(settings))
    except RuntimeError as exc:
        if is_temporal_connect_failure(exc):
            raise Unreachable([temporal_problem(settings.temporal.address, exc)]) from None
        raise
    return 0


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    url = args.webhook_url or f"http://{settings.webhook.internal_host}:{settings.webhook.internal_port}"
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
        from runtime.devdefaults import DEV_INTAKE_TOKEN

        token = DEV_INTAKE_TOKEN  # a local `payouts dev` stack
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if settings.webhook.intake_secret_list():  # signed intake (docs/security.md)
        from runtime.signing import signature_headers

        headers.update(signature_headers(settings.webhook.intake_secret_list()[:1], raw))
    try:
        resp = httpx.post(f"{url}/v1/receipts/accepted", content=raw, headers=headers)
    except httpx.TransportError as exc:
        raise Unreachable([webhook_problem(url, exc)]) from None
    if resp.status_code == 409:  # the receipt's payout was started by a request that differs
        answer = resp.json()
        fields = ", ".join(f["field"] for f in answer.get("fields", []))
        print(f"error: {answer['workflow_id']} exists and was started with a different {fields}; "
              "it is unchanged, and this request started nothing", file=sys.stderr)
        return 1
    if resp.status_code != 202:
        print(f"error: HTTP {resp.status_code}: {resp.text}", file=sys.stderr)
        return 1
    print(json.dumps(resp.json()))
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from console.publish import run_publish
    from rabbit.broker import BROKER_ERRORS, display_url
    from runtime.devdefaults import DEV_RABBIT_URL

    unknown = sorted(set(args.bad) - {"all", *_bad_kinds()})
    if unknown:
        print(f"error: unknown --bad kind {', '.join(unknown)}; one of all, {', '.join(_bad_kinds())}", file=sys.stderr)
        return 2
    rabbit = settings.rabbit
    if not rabbit.url.get_secret_value():
        rabbit = rabbit.model_copy(update={"url": SecretStr(DEV_RABBIT_URL)})  # the local broker
    try:
        lines = asyncio.run(run_publish(rabbit, count=args.count, status=args.status, bad=args.bad))
    except BROKER_ERRORS as exc:
        raise Unreachable([rabbit_problem(display_url(rabbit), exc)]) from None
    for line in lines:
        print(line)
    print(f"published {len(lines)} message(s) to {rabbit.intake_queue} at {display_url(rabbit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
