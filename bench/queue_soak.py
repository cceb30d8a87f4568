"""The queue soak: receipts through `receipt.accepted` with poison messages in the middle, on the real
processes; every other receipt must be paid and every poison must reach the dead-letter queue in time.

    .venv/bin/python -m bench.queue_soak --receipts 300 --workers 2

Starts the Temporal dev server, a PostgreSQL ledger (a throwaway database on 127.0.0.1:5432; `--ledger
sqlite` for a file), `payouts sandbox` (no faults), `payouts webhook` (Portmone's callbacks),
`--workers` `payouts worker` processes and `payouts consumer`, on queues of its own on the local
RabbitMQ (a random suffix; deleted at the end). It then publishes the receipts to the intake queue,
in order, with the poison messages after the first half: AMQP properties the client cannot decode (a
header name that is not UTF-8, headers nested 3,000 deep, a timestamp of 2^63-1) and a message whose
headers nearly fill the broker's frame limit (with a body that is not JSON, so it is dead-lettered).

It checks: every receipt PAID, with one paid bill, ledger and workflow agreeing (bench.soak's
checks); each poison on the dead-letter queue with its reason within `--poison-bound` seconds of its
publication; the intake queue drained; the consumer never lost its connection. Prints its figures;
exits 1 when a promise is broken (each breach listed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
from pamqp import commands

from bench.soak import Processes, check, settle, stack_environment, throwaway_ledger, wait_http
from ledger import Ledger
from payouts.status import PayoutStatus
from rabbit import frames
from rabbit.broker import connect, connection_name
from rabbit.consumer import DETAIL_HEADER, REASON_HEADER
from runtime.settings import RabbitSettings
from tests.metrics import Exposition
from tests.rabbit.helpers import isolated_rabbit_settings, open_broker, queues_of, rabbit_env
from tests.rabbit.hostile import UNDECODABLE, near_the_frame_limit, publish_raw, undecodable
from tests.stack import free_port, sample_receipt
from tests.temporal_envs import dev_server

Item = tuple[bytes, commands.Basic.Properties]


def receipt_message(receipt_id: str, n: int) -> Item:
    """A version-1 message of an accepted receipt (the phone's operator code is 00: nobody's number)."""
    payload = {"version": 1, "status": "accepted", **sample_receipt(receipt_id, msisdn=f"38000{n:07d}")}
    body = json.dumps(payload).encode()
    message = aio_pika.Message(body, content_type="application/json", message_id=receipt_id,
                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
    return body, message.properties


async def negotiated_frame_max(settings: RabbitSettings) -> int:
    connection = await connect(settings, connection_name("queue-soak"))
    async with connection:
        channel = await connection.channel()
        underlay = await channel.get_underlay_channel()
        return int(underlay.connection.connection_tune.frame_max)


def poisons(frame_max: int, seed: str) -> list[tuple[str, str, Item]]:
    """(message id, the reason it must be dead-lettered with, the message)."""
    out: list[tuple[str, str, Item]] = []
    for n, kind in enumerate(UNDECODABLE):
        mid, properties = undecodable(kind, f"poison-{seed}-{n}")
        body = b'{"version": 1, "status": "accepted", "receipt_id": "poison"}'
        out.append((mid, "undecodable_properties", (body, properties)))
    big = near_the_frame_limit(b"not json", frame_max, f"poison-{seed}-frame")
    out.append((f"poison-{seed}-frame", "invalid_json", (big.body, big.properties)))
    return out


async def scrape(http: httpx.AsyncClient, url: str) -> Exposition:
    return Exposition.parse((await http.get(url)).text)


def answered(counters: Exposition) -> float:
    """Receipts whose payout the consumer started or found (a redelivered one is found: `existing`)."""
    return sum(counters.value("payout_queue_messages_total", outcome=o) for o in ("started", "existing"))


def reason_of(headers: dict[str, object]) -> str:
    """Our reason, or the broker's when it dead-lettered the message itself."""
    ours = headers.get(REASON_HEADER)
    return str(ours) if ours is not None else f"broker: {headers.get('x-first-death-reason')}"


async def queue_soak(args: argparse.Namespace) -> int:
    # This process reads the dead-letter queue, where a poison the broker dead-lettered arrives as it
    # was published: read it as the consumer would, or the check itself dies on it.
    frames.install()
    data_dir = Path(tempfile.mkdtemp(prefix="payouts-queue-soak-"))
    ledger_url, admin = await throwaway_ledger(args.ledger, data_dir)
    ledger = Ledger.from_url(ledger_url)
    rabbit = isolated_rabbit_settings(retry_delay_seconds=5.0, prefetch=args.prefetch, metrics_port=free_port(),
                                      reconnect_min_seconds=0.5, reconnect_max_seconds=5.0)
    sandbox_port, webhook_port, internal_port = free_port(), free_port(), free_port()
    sandbox_url, webhook_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{webhook_port}"
    consumer_url = f"http://127.0.0.1:{rabbit.metrics_port}"
    seed = uuid.uuid4().hex[:6]
    receipts = [f"QSOAK-{seed}-{i:05d}" for i in range(args.receipts)]
    print(f"queue soak: {args.receipts} receipts, {args.workers} workers, ledger {args.ledger}, "
          f"intake queue {rabbit.intake_queue}, logs in {data_dir}")
    breaches: list[str] = []
    started = time.perf_counter()
    async with dev_server() as temporal:
        env = {
            **stack_environment(
                temporal_address=temporal.client.service_client.config.target_host, ledger_url=ledger_url,
                sandbox_port=sandbox_port, webhook_port=webhook_port, internal_port=internal_port, data_dir=data_dir,
                callback_timeout=args.callback_timeout,
            ),
            **rabbit_env(rabbit),
        }
        procs = Processes(env=env, log_dir=data_dir)
        http = httpx.AsyncClient(timeout=30)
        try:
            procs.sandbox = procs.start("sandbox", "sandbox", "--port", str(sandbox_port))
            procs.webhook = procs.start("webhook", "webhook")
            for _ in range(args.workers):
                procs.start_worker()
            procs.others.append(procs.start("consumer", "consumer"))
            await wait_http(f"{sandbox_url}/_sandbox/health")
            await wait_http(f"{webhook_url}/readyz")
            await wait_http(f"{consumer_url}/readyz")

            frame_max = await negotiated_frame_max(rabbit)
            poison = poisons(frame_max, seed)
            good = [receipt_message(r, i) for i, r in enumerate(receipts)]
            half = len(good) // 2
            loaded = time.perf_counter()
            await publish_raw(rabbit, good[:half])
            poisoned_at = time.perf_counter()
            await publish_raw(rabbit, [item for _, _, item in poison])
            await publish_raw(rabbit, good[half:])
            published = time.perf_counter()

            broker = await open_broker()
            try:
                deadline = poisoned_at + args.poison_bound
                while True:  # every poison on the dead-letter queue, or the bound passed
                    if await broker.count(rabbit.dead_letter_queue) >= len(poison) or time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.1)
                dead_after = time.perf_counter() - poisoned_at
                counters = await scrape(http, f"{consumer_url}/metrics")
                while answered(counters) < len(good):
                    if time.perf_counter() - published > args.settle_timeout:
                        break
                    await asyncio.sleep(0.2)
                    counters = await scrape(http, f"{consumer_url}/metrics")
                consumed = time.perf_counter() - loaded

                views = await settle(temporal.client, receipts, timeout=args.settle_timeout)
                paid_at = time.perf_counter() - loaded
                soak_breaches, figures = await check(temporal.client, http, sandbox_url, ledger, receipts)
                breaches += soak_breaches
                not_paid = [r for r, v in views.items() if v is None or v.status != PayoutStatus.PAID]
                breaches += [f"{r}: not PAID ({views[r].status.value if views[r] else 'no answer'})"  # type: ignore[union-attr]
                             for r in not_paid]

                dead = await broker.take_all(rabbit.dead_letter_queue, expected=len(poison), timeout=1)
                intake_left = await broker.count(rabbit.intake_queue)
                retry_left = await broker.count(rabbit.retry_queue)
                counters = await scrape(http, f"{consumer_url}/metrics")
            finally:
                await broker.delete(queues_of(rabbit))
                await broker.connection.close()
        finally:
            await http.aclose()
            procs.stop()
            await ledger.aclose()
            if admin is not None:
                await admin.drop_all()
                await admin.engine.dispose()

    by_id = {d.message_id: d for d in dead}
    if dead_after > args.poison_bound:
        breaches.append(f"the poison took {dead_after:.1f} s to reach the dead-letter queue "
                        f"(bound {args.poison_bound:g} s)")
    for mid, reason, _ in poison:
        got = by_id.get(mid)
        if got is None:
            breaches.append(f"{mid}: not on the dead-letter queue")
        elif reason_of(got.headers) != reason:
            breaches.append(f"{mid}: dead-lettered as {reason_of(got.headers)!r}, not {reason!r}")
    strays = [d.message_id for d in dead if d.message_id not in {mid for mid, _, _ in poison}]
    if strays:
        breaches.append(f"good messages on the dead-letter queue: {strays[:10]}")
    if intake_left or retry_left:
        breaches.append(f"left on the queues: intake {intake_left}, delay {retry_left}")
    reconnects = counters.value("payout_queue_reconnects_total")
    if reconnects:
        breaches.append(f"the consumer lost its connection {reconnects:g} times")
    started_n = counters.value("payout_queue_messages_total", outcome="started")
    if answered(counters) < len(good):
        breaches.append(f"{answered(counters):g} payouts started or found from the queue, not {len(good)}")

    total = time.perf_counter() - started
    reasons = collections.Counter(reason_of(d.headers) for d in dead)
    status = {k: v for k, v in figures.items() if k.startswith("status ")}
    print(f"ran {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, in all {total:.0f} s")
    print(f"published {len(good)} receipts + {len(poison)} poison messages in {published - loaded:.1f} s "
          f"(poison after receipt {half}); frame limit {frame_max} bytes")
    print(f"poison on the dead-letter queue {dead_after:.2f} s after it was published (bound {args.poison_bound:g} s): "
          f"{dict(sorted(reasons.items()))}")
    for d in dead:
        print(f"  {d.message_id}: {reason_of(d.headers)}: {str(d.headers.get(DETAIL_HEADER, ''))[:140]}")
    outcome = {o: counters.value("payout_queue_messages_total", outcome=o) for o in ("existing", "dead_lettered")}
    print(f"consumer: started {started_n:g}, existing {outcome['existing']:g}, "
          f"dead-lettered {outcome['dead_lettered']:g}, reconnects {reconnects:g}; "
          f"all started {consumed:.1f} s after the first publish ({len(good) / consumed:.1f} receipts/s)")
    print(f"all settled {paid_at:.1f} s after the first publish; bills {figures.get('bills', 0)}, "
          f"paid bills {figures.get('paid_bills', 0)}; {dict(sorted(status.items()))}")
    if breaches:
        print(f"BROKEN PROMISES ({len(breaches)}):")
        for line in breaches[:50]:
            print(f"  {line}")
        return 1
    print("every promise held: every receipt PAID once, the poison dead-lettered with its reason in time, "
          "the queues drained, the consumer never lost its connection")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=16, help="RABBIT_PREFETCH of the consumer")
    parser.add_argument("--poison-bound", type=float, default=30.0,
                        help="seconds within which every poison must be on the dead-letter queue")
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--callback-timeout", type=int, default=30, help="PAYOUT_CALLBACK_TIMEOUT_SECONDS")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    sys.exit(asyncio.run(queue_soak(parser.parse_args())))


if __name__ == "__main__":
    main()
