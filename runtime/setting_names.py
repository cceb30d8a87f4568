"""The environment variables behind the settings, named from the classes in `runtime.settings`, so that
whatever names them (`payouts <command> --help`, the docs test, the tests' clean environment) follows a
renamed or added setting without an edit.

A setting is addressed by its path in `Settings`: `temporal` (a section: every variable of it),
`ledger.url` (one variable of a section), `env` (one of `Settings`' own, `PAYOUTS_ENV`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from runtime.settings import Settings, env_prefix, setting_sections


@dataclass(frozen=True)
class Variable:
    name: str  # TEMPORAL_ADDRESS
    default: str | None  # as written in the environment; None when there is none to show (empty, secret, computed)

    def __str__(self) -> str:
        return self.name if self.default is None else f"{self.name}={self.default}"


def variables(path: str) -> list[Variable]:
    """The variables of one setting path, in field order; a KeyError names a path `Settings` lacks."""
    head, _, field = path.partition(".")
    sections = setting_sections()
    if head not in sections:
        if field or head not in Settings.model_fields:
            raise KeyError(f"no setting {path!r} in runtime.settings.Settings")
        return [_variable(Settings, head)]
    cls = sections[head]
    if field and field not in cls.model_fields:
        raise KeyError(f"no setting {path!r}: {cls.__name__} has no field {field!r}")
    return [_variable(cls, name) for name in ([field] if field else list(cls.model_fields))]


def all_variables() -> list[Variable]:
    """Every variable the settings read: `Settings`' own, then each section's."""
    own = [name for name in Settings.model_fields if name not in setting_sections()]
    return [v for path in [*own, *setting_sections()] for v in variables(path)]


def prefixes() -> list[str]:
    """Every prefix of a setting variable (`PAYOUTS_`, `PORTMONE_`, …), once each."""
    return list(dict.fromkeys([env_prefix(Settings), *map(env_prefix, setting_sections().values())]))


def _variable(cls: type[BaseSettings], name: str) -> Variable:
    return Variable(f"{env_prefix(cls)}{name.upper()}", _shown(cls.model_fields[name]))


def _shown(field: FieldInfo) -> str | None:
    default = field.default
    if default is PydanticUndefined or default is None or default == "" or isinstance(default, SecretStr):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, Path):
        return default.as_posix()
    return str(default)
