"""The stack fixtures on the isolated time-skipping server (tests/stack_fixtures.py)."""

from tests.stack_fixtures import env, shared_stack, stack  # noqa: F401 - fixtures are found by name
