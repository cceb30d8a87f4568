"""The bot's RabbitMQ: `receipt.accepted` in (`payouts consumer`), `bonus.events` out (an EventChannel).

Depends on the kernel (`payouts`) only: receipts become payouts through `runtime.start`, the one
start path the HTTP intake uses too.
"""
