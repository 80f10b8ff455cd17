"""One logging format for every streamrec process: one line per record, logfmt-style.

Why: the embedded stack writes each process's stderr to a file under ``.streamrec/logs``;
``grep`` and log shippers cope best with one ``key=value`` line per record, and a
traceback folded into one line cannot interleave with other records.

Example::

    ts=2024-05-01T12:00:00.123Z level=INFO logger=stream.worker pid=4242 msg="ready" parts=4
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from core.settings import Settings

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is printed.
# uvicorn's ``color_message`` (its message again, with terminal colour codes) is dropped:
# escape codes in a log file break grep and log shippers.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName", "color_message", "not_limited"}

#: ``extra=NOT_LIMITED`` on a warning that :class:`RepeatLimiter` must always pass (one
#: per process start, e.g. "AUTH IS OFF": several apps in one process, as in tests,
#: would otherwise log it once per 10 s only).
NOT_LIMITED = {"not_limited": True}

_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

# Chatty third-party loggers that drown the interesting lines at INFO.
_QUIET = {"kafka": logging.WARNING, "aiokafka": logging.WARNING, "httpx": logging.WARNING}


def _quote(value: object) -> str:
    """Render one logfmt value: bare when safe, else double-quoted with escapes."""
    text = str(value)
    if text and not any(c in text for c in ' ="\n\r\t\\'):
        return text
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """Formats a record as ``ts=… level=… logger=… pid=… msg=… [extra=…] [exc=…]``."""

    def format(self, record: logging.LogRecord) -> str:
        """One line, no matter how many lines the message or traceback has."""
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname}",
            f"logger={_quote(record.name)}",
            f"pid={record.process}",
            f"msg={_quote(record.getMessage())}",
        ]
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        elif record.exc_text:
            parts.append(f"exc={_quote(record.exc_text)}")
        if record.stack_info:
            parts.append(f"stack={_quote(record.stack_info)}")
        return " ".join(parts)


class _CancelledAtClose(logging.Filter):
    """Drops kafka-python's ERROR for a metadata refresh that its own ``close()``
    cancelled (``Metadata refresh: failed Cancelled``): a client closing after its work
    (``streamrec train``, ``status``) printed it now and then, and nothing had failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one record; every other passes."""
        args = record.args if isinstance(record.args, tuple) else ()
        return not (record.msg == "Metadata refresh: failed %s" and len(args) == 1
                    and type(args[0]).__name__ == "Cancelled")


_CANCELLED_AT_CLOSE = _CancelledAtClose()


class RepeatLimiter(logging.Filter):
    """Passes a warning at most once per ``interval_s`` per message template; the next
    one that passes carries ``suppressed=N``, how many it stood for.

    Why: uvicorn logs a WARNING for every request its parser refuses ("Invalid HTTP
    request received."), so anyone able to open a connection could write a log line per
    packet and fill the disk or drown the lines that matter. Records below WARNING pass
    untouched; the table of templates is bounded (cleared past ``max_templates``)."""

    def __init__(self, interval_s: float = 10.0, max_templates: int = 64) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_templates = max_templates
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat inside the interval; True (with the count) otherwise."""
        if record.levelno < logging.WARNING or getattr(record, "not_limited", False):
            return True
        key = str(record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= self.max_templates and key not in self._last:
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            record.suppressed = skipped
        return True


#: On uvicorn's own logger: its per-request warnings are for the client's mistakes.
_UVICORN_REPEATS = RepeatLimiter()

#: On the loggers whose warnings can come once per request or per message: the API's (a
#: Redis or Kafka outage refuses every write) and the worker's (a dead letter per poison
#: message). A flood of either wrote a line each; the metrics and ``streamrec status``
#: count every one (dead letters with their last reasons).
#: And on mode's timers: a worker waiting out a Redis outage wrote ``Timer heartbeat is
#: overlapping`` for each of its timers every few seconds (the worker's own line names
#: the outage: ``stream.rebuild.RedisOutageNotice``).
_REPEATS = {"uvicorn.error": _UVICORN_REPEATS, "streamrec.api": RepeatLimiter(),
            "streamrec.worker": RepeatLimiter(), "mode.timers": RepeatLimiter()}


class _KafkaClientRepeats(logging.Filter):
    """:class:`RepeatLimiter` for the records of the Kafka clients' loggers (``aiokafka``,
    ``kafka`` and their children), on our handler: a logger's own filter does not see
    its children's records, and aiokafka logs from several.

    Why: while the broker was down for 40 s an API process wrote 138,000 lines (aiokafka's
    ``Unable connect to node`` and ``Unable to update metadata`` for each waiting send,
    ~3,400 a second) and a worker ~70 a second; the processes' own lines say what is
    wrong once (``Kafka at … does not take writes``, ``Kafka at … does not answer``)."""

    def __init__(self) -> None:
        super().__init__()
        self.limiter = RepeatLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        """A Kafka client's warning or error once per 10 s per template; others pass."""
        root = record.name.partition(".")[0]
        return root not in ("aiokafka", "kafka") or self.limiter.filter(record)


_KAFKA_CLIENT_REPEATS = _KafkaClientRepeats()


class _StreamrecHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed, so a second call replaces rather than duplicates it."""


def configure_logging(level: str | int = "INFO", *, stream: TextIO | None = None) -> None:
    """Send every logger's records to stderr (or ``stream``) as one logfmt line each.

    Safe to call more than once (the previous streamrec handler is replaced). An unknown
    level name falls back to INFO with a warning instead of failing the process.
    """
    bad_level: str | None = None
    if isinstance(level, str):
        name = level.strip().upper()
        if name == "WARN":
            name = "WARNING"
        if name not in _LEVELS:
            bad_level, name = level, "INFO"
        numeric = logging.getLevelName(name)
    else:
        numeric = level

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StreamrecHandler):
            root.removeHandler(handler)
    handler = _StreamrecHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(_KAFKA_CLIENT_REPEATS)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, numeric))
    cluster = logging.getLogger("kafka.cluster")
    if _CANCELLED_AT_CLOSE not in cluster.filters:
        cluster.addFilter(_CANCELLED_AT_CLOSE)
    for name, limiter in _REPEATS.items():
        limited = logging.getLogger(name)
        if limiter not in limited.filters:
            limited.addFilter(limiter)
    logging.captureWarnings(True)
    if bad_level is not None:
        logging.getLogger(__name__).warning(
            "unknown log level %r, using INFO", bad_level
        )


def connections_line(settings: Settings, broker: str | None = None) -> str:
    """What a process connects to, for its start-up line: the Kafka bootstrap (with
    ``broker``, e.g. ``tansu``, when known) and security protocol, and the Redis URL
    (password masked) and mode. Never a key, password or SASL secret."""
    from core.setting_checks import mask_url

    kind = f"{broker}, " if broker else ""
    return (f"Kafka {settings.kafka_bootstrap} ({kind}{settings.kafka_security_protocol}), "
            f"Redis {mask_url(settings.redis_url)} ({settings.redis_mode})")
