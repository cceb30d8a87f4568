"""Reading metrics in tests: the Prometheus exposition format, parsed (never string-matched)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from runtime import telemetry


@dataclass(frozen=True)
class Exposition:
    """Every sample of one scrape: `value(name, **labels)` sums the samples whose labels include `labels`."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
        return cls(samples)

    def has(self, name: str) -> bool:
        return name in self.samples

    def value(self, name: str, **labels: str) -> float:
        return sum(v for found, v in self.samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {found[label] for found, _ in self.samples.get(name, []) if label in found}


def in_process() -> Exposition:
    """This test process's own metrics (tests/conftest.py sets telemetry up for the session)."""
    body, _ = telemetry.prometheus_exposition()
    return Exposition.parse(body.decode())
