"""Writes (or checks) the JSON Schema files of every wire model.

``python -m schemas.export`` rewrites ``schemas/json/``; ``--check`` exits 1 if any file
differs from the models, which the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

import schemas
import schemas.admin
import schemas.merch

JSON_DIR = Path(__file__).parent / "json"

#: file stem → model
MODELS: dict[str, type[BaseModel]] = {
    "tracking-event": schemas.TrackingEvent,
    "event-batch": schemas.EventBatch,
    "identify-request": schemas.IdentifyRequest,
    "topic-event": schemas.TopicEvent,
    "event-envelope": schemas.EventEnvelope,
    "item-update": schemas.ItemUpdate,
    "catalog-item": schemas.CatalogItem,
    "item-batch": schemas.ItemBatch,
    "catalog-record": schemas.CatalogRecord,
    "events-accepted": schemas.EventsAccepted,
    "accepted": schemas.Accepted,
    "recommendation-list": schemas.RecommendationList,
    "error-body": schemas.ErrorBody,
    "ready-status": schemas.ReadyStatus,
    "health-status": schemas.HealthStatus,
    "service-index": schemas.ServiceIndex,
    "attribution-report": schemas.AttributionReport,
    "item-stats": schemas.admin.ItemStats,
    "catalog-entry": schemas.admin.CatalogEntry,
    "entity-overview": schemas.admin.EntityOverview,
    "dashboard-data": schemas.admin.DashboardData,
    "experiment-spec": schemas.ExperimentSpec,
    "experiment": schemas.Experiment,
    "experiment-report": schemas.ExperimentReport,
    "experiment-list": schemas.ExperimentList,
    "promotion-body": schemas.merch.PromotionBody,
    "promotion": schemas.merch.Promotion,
    "promotion-list": schemas.merch.PromotionList,
    "forget-record": schemas.merch.ForgetRecord,
}


def render(model: type[BaseModel]) -> str:
    """The JSON Schema text of one model, stable across runs."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    stale = []
    for stem, model in MODELS.items():
        path = directory / f"{stem}.schema.json"
        if not path.exists() or path.read_text() != render(model):
            stale.append(path.name)
    return stale


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    """Write every schema file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, model in MODELS.items():
        path = directory / f"{stem}.schema.json"
        path.write_text(render(model))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m schemas.export``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale JSON Schema files (run python -m schemas.export):", *stale, sep="\n  ")
            return 1
        print(f"{len(MODELS)} schema files up to date")
        return 0
    for path in write_all():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
