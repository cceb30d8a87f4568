"""The real sandbox fixtures (tests/sandbox_fixtures.py)."""

from tests.sandbox_fixtures import (  # noqa: F401 - fixtures are found by name
    callback_receiver,
    portmone_client,
    sandbox,
    sandbox_server,
)
