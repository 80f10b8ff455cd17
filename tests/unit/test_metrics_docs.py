"""docs/operations.md "Metrics" names every series the API and the workers export, with
its labels and type, and nothing else; and the names follow Prometheus's rules."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

import stream.metrics  # noqa: F401 - registers the worker's series
from api.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(streamrec_[a-z0-9_]+)(?:\{([a-z_,]+)\})?` \| (.*) \|$", re.M)


def _exported(registry: CollectorRegistry) -> dict[str, tuple[str, frozenset[str]]]:
    """Exposed name (counters with ``_total``) → (type, label names)."""
    out = {}
    for family in registry.collect():
        if not family.name.startswith("streamrec_"):
            continue
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        if not family.samples:  # a labelled series nobody has set yet
            labels = set(getattr(_collector(registry, family.name), "_labelnames", ()))
        out[name] = (family.type, frozenset(labels))
    return out


def _collector(registry: CollectorRegistry, name: str) -> object:
    return registry._names_to_collectors.get(name)  # noqa: SLF001 - labels of an empty family


def _documented() -> dict[str, tuple[str, frozenset[str]]]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("\n## Metrics"):]
    section = section[:section.index("\n## ", 1)]
    out = {}
    for name, labels, what in ROW.findall(section):
        kind = next((k for k in ("histogram", "gauge") if what.startswith(f"{k}:")), "counter")
        out[name] = (kind, frozenset(labels.split(",")) if labels else frozenset())
    return out


def test_every_exported_metric_is_documented_with_its_labels_and_type() -> None:
    exported = {**_exported(Metrics().registry), **_exported(REGISTRY)}
    assert exported == _documented()


def test_metric_names_follow_prometheus_rules() -> None:
    for name, (kind, labels) in _documented().items():
        assert re.fullmatch(r"[a-z_]+", name) and all(re.fullmatch(r"[a-z_]+", lb)
                                                      for lb in labels), name
        assert name.endswith("_total") == (kind == "counter"), name
        if kind == "histogram" or "memory_bytes" in name or "maxmemory" in name:
            assert name.endswith(("_seconds", "_bytes")), name
