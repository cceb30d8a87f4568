"""Protocol hot paths: parsing Portmone's XML and one bills.create round trip to the sandbox.

    .venv/bin/python -m bench.bench_protocol [--iterations N] [--calls N]

Prints figures; asserts nothing about time (targets are read off these numbers, not enforced).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from pydantic import SecretStr

from portmone import AnsweredOk, PortmoneClient, parse_rsp
from runtime import devdefaults
from sandbox.app import start_sandbox
from sandbox.config import SandboxConfig

OK_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rsp status="ok"><bill><billId>123456789</billId>'
    b"<status>PAYED</status><contractNumber>380001234567</contractNumber><amount>25.00</amount>"
    b"<currency>UAH</currency><comment>DarnitsaCashBot receipt R-1</comment><payeeId>dev-payee-1</payeeId>"
    b"<date>27.11.2026</date></bill></rsp>"
)


def bench_parse(iterations: int) -> None:
    start = time.perf_counter()
    for _ in range(iterations):
        parse_rsp(OK_BODY, max_bytes=256 * 1024)
    elapsed = time.perf_counter() - start
    print(f"parse_rsp: {iterations} parses in {elapsed:.3f} s = {iterations / elapsed:,.0f}/s, "
          f"{elapsed / iterations * 1e6:.1f} µs each")


async def bench_round_trip(calls: int) -> None:
    runner, port = await start_sandbox(SandboxConfig(callback_url=None), "127.0.0.1", 0)
    client = PortmoneClient(
        api_base=f"http://127.0.0.1:{port}/api/directcash/",
        login=devdefaults.DEV_PORTMONE_LOGIN,
        password=SecretStr(devdefaults.DEV_PORTMONE_PASSWORD),
    )
    latencies: list[float] = []
    try:
        for i in range(calls):
            t0 = time.perf_counter()
            outcome = await client.create_bill(
                payee_id=devdefaults.DEV_PAYEE_ID, contract_number="380001234567",
                amount_kopecks=2500, currency="UAH", comment=f"bench {i}",
            )
            latencies.append(time.perf_counter() - t0)
            assert isinstance(outcome, AnsweredOk), outcome
    finally:
        await client.aclose()
        await runner.cleanup()
    ms = sorted(x * 1000 for x in latencies)
    print(f"bills.create round trip over loopback ({calls} calls): p50 {statistics.median(ms):.2f} ms, "
          f"p95 {ms[int(len(ms) * 0.95) - 1]:.2f} ms, max {ms[-1]:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    bench_parse(args.iterations)
    asyncio.run(bench_round_trip(args.calls))


if __name__ == "__main__":
    main()
