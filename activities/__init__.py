"""Activities: thin, idempotent bridges from workflows to Portmone, the ledger, Telegram, telecom, analytics.

Each is a method of a small class built with its dependencies, so tests inject fakes.
"""
