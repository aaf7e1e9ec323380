"""In-memory stand-ins for the processor's collaborators (S3 client, logger, metrics)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.journal import JOURNAL_SUFFIX, decode_journal


@dataclass
class FakeS3:
    """Records put_object calls: item objects in `puts`, journal objects and journal
    markers in `journal_puts`; `fail` (items) and `fail_journal` may raise for a call to
    simulate S3 refusing it."""

    fail: Callable[[dict[str, Any]], None] | None = None
    fail_journal: Callable[[dict[str, Any]], None] | None = None
    puts: list[dict[str, Any]] = field(default_factory=list)
    journal_puts: list[dict[str, Any]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # every key put, in order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        item = "/v1/items/" in kwargs["Key"]
        hook = self.fail if item else self.fail_journal
        if hook is not None:
            hook(kwargs)
        with self._lock:
            (self.puts if item else self.journal_puts).append(kwargs)
            self.order.append(kwargs["Key"])
            return {"VersionId": str(len(self.order))}

    def journal_objects(self) -> list[dict[str, Any]]:
        """The journal object puts (markers aside)."""
        return [p for p in self.journal_puts if p["Key"].endswith(JOURNAL_SUFFIX)]

    def journaled_sequences(self) -> list[str]:
        """Sequence numbers in the journal objects, in put order (replays repeat)."""
        return [
            change.sequence_number
            for put in self.journal_objects()
            for change in decode_journal(put["Body"], put["Key"])
        ]

    def sequences_by_key(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for put in self.puts:
            out.setdefault(put["Key"], []).append(json.loads(put["Body"])["sequenceNumber"])
        return out

    def sequences(self) -> set[str]:
        return {json.loads(put["Body"])["sequenceNumber"] for put in self.puts}


@dataclass
class RecordingLogger:
    lines: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def _log(self, level: str, message: str, **fields: Any) -> None:
        self.lines.append((level, message, fields))

    def info(self, message: str, **fields: Any) -> None:
        self._log("info", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log("error", message, **fields)

    def errors(self) -> list[tuple[str, dict[str, Any]]]:
        return [(message, fields) for level, message, fields in self.lines if level == "error"]


@dataclass
class RecordingMetrics:
    values: dict[str, list[float]] = field(default_factory=dict)
    dimensions: dict[str, str] = field(default_factory=dict)

    def add_dimension(self, name: str, value: str) -> None:
        self.dimensions[name] = value

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.values.setdefault(name, []).append(value)
