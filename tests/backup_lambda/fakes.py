"""In-memory stand-ins for the processor's collaborators (S3 client, logger, metrics)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeS3:
    """Records put_object calls; `fail` may raise for a call to simulate S3 refusing it."""

    fail: Callable[[dict[str, Any]], None] | None = None
    puts: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        if self.fail is not None:
            self.fail(kwargs)
        with self._lock:
            self.puts.append(kwargs)
        return {"VersionId": str(len(self.puts))}

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

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.values.setdefault(name, []).append(value)
