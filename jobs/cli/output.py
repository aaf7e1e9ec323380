"""Output helpers shared by the commands."""

from __future__ import annotations

import json
from typing import Any


def emit_json(payload: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object, the last line of output."""
    print(json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":")))
