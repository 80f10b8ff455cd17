"""Wire contracts of streamrec: request, response and topic message models.

Nothing else in the code base defines a payload shape. ``python -m schemas.export``
writes the JSON Schema files in ``schemas/json/`` for SDKs in other languages.
"""

from schemas.api import (
    Accepted,
    AttributionReport,
    AttributionRow,
    ErrorBody,
    ErrorInfo,
    EventsAccepted,
    HealthStatus,
    ReadyStatus,
    RecommendationItem,
    RecommendationList,
    ServiceIndex,
    Source,
)
from schemas.catalog import CatalogItem, CatalogRecord, ItemBatch, ItemUpdate
from schemas.events import (
    EVENT_TYPES,
    EventBatch,
    EventContext,
    EventEnvelope,
    EventType,
    IdentifyRequest,
    TopicEvent,
    TrackingEvent,
)
from schemas.experiments import (
    Experiment,
    ExperimentList,
    ExperimentReport,
    ExperimentSpec,
    ExperimentTag,
    ExposureInfo,
)

__all__ = [
    "Accepted",
    "AttributionReport",
    "AttributionRow",
    "CatalogItem",
    "CatalogRecord",
    "EVENT_TYPES",
    "ErrorBody",
    "ErrorInfo",
    "EventBatch",
    "EventContext",
    "EventEnvelope",
    "EventType",
    "EventsAccepted",
    "Experiment",
    "ExperimentList",
    "ExperimentReport",
    "ExperimentSpec",
    "ExperimentTag",
    "ExposureInfo",
    "HealthStatus",
    "ServiceIndex",
    "IdentifyRequest",
    "ItemBatch",
    "ItemUpdate",
    "ReadyStatus",
    "RecommendationItem",
    "RecommendationList",
    "Source",
    "TopicEvent",
    "TrackingEvent",
]
