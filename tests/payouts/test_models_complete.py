"""Every pydantic model of the kernel is complete once its module is imported. A model naming one
defined later in its module builds lazily, on first use, by looking its names up in `sys.modules`;
inside the workflow sandbox that lookup can fail, and the payout's input would not decode."""

from __future__ import annotations

import importlib
import pkgutil

import pydantic

import payouts


def test_every_kernel_model_is_complete_at_import() -> None:
    incomplete: list[str] = []
    for info in pkgutil.iter_modules(payouts.__path__, "payouts."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            ours = isinstance(value, type) and issubclass(value, pydantic.BaseModel) and value.__module__ == info.name
            if ours and not value.__pydantic_complete__:
                incomplete.append(f"{info.name}.{name}")

    assert incomplete == []
