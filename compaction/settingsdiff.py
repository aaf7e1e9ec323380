"""What differs between two table settings documents (pure: no I/O).

One line per difference, with a path into the document:

    + table.GlobalSecondaryIndexes[by_region]: {...}     added
    - table.GlobalSecondaryIndexes[by_status]: {...}     removed
    ~ time_to_live.TimeToLiveStatus: "ENABLED" -> "DISABLED"
    ? tags: not captured in the newer settings (ListTagsOfResource: AccessDeniedException)

Lists whose elements have a name (indexes, attribute definitions, tags, auto scaling
targets and policies, Kinesis destinations) are compared element by element by that name,
so an index added or removed is one line, whatever the order DynamoDB lists them in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from compaction.tablesettings import PARTS, TableSettings

_KEYED: dict[str, tuple[str, ...]] = {
    "table.AttributeDefinitions": ("AttributeName",),
    "table.GlobalSecondaryIndexes": ("IndexName",),
    "table.LocalSecondaryIndexes": ("IndexName",),
    "tags": ("Key",),
    "kinesis_streaming_destinations": ("StreamArn",),
    "auto_scaling.ScalableTargets": ("ResourceId", "ScalableDimension"),
    "auto_scaling.ScalingPolicies": ("ResourceId", "ScalableDimension", "PolicyName"),
}


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _name(element: Any, fields: tuple[str, ...]) -> str:
    if isinstance(element, dict):
        return " ".join(str(element.get(f)) for f in fields)
    return _text(element)


def _compare(old: Any, new: Any, path: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            where = f"{path}.{key}"
            if where in _KEYED and (key not in old or key not in new):
                # An absent list of named things is an empty one: one line per element.
                _compare(old.get(key, []), new.get(key, []), where, out)
            elif key not in old:
                out.append(f"+ {where}: {_text(new[key])}")
            elif key not in new:
                out.append(f"- {where}: {_text(old[key])}")
            else:
                _compare(old[key], new[key], where, out)
        return
    fields = _KEYED.get(path)
    if fields and isinstance(old, list) and isinstance(new, list):
        before = {_name(e, fields): e for e in old}
        after = {_name(e, fields): e for e in new}
        if len(before) == len(old) and len(after) == len(new):
            for key in sorted(set(before) | set(after)):
                where = f"{path}[{key}]"
                if key not in before:
                    out.append(f"+ {where}: {_text(after[key])}")
                elif key not in after:
                    out.append(f"- {where}: {_text(before[key])}")
                else:
                    _compare(before[key], after[key], where, out)
            return
    if old != new:
        if old is None:
            out.append(f"+ {path}: {_text(new)}")
        elif new is None:
            out.append(f"- {path}: {_text(old)}")
        else:
            out.append(f"~ {path}: {_text(old)} -> {_text(new)}")


def diff_settings(
    old: TableSettings,
    new: TableSettings,
    parts: Iterable[str] = PARTS,
    names: tuple[str, str] = ("older", "newer"),
) -> list[str]:
    """The differences from `old` to `new`, one line each (empty: the same settings).
    `names` say what the two are in the "not captured" lines."""
    out: list[str] = []
    for name in parts:
        before, after = old.part(name), new.part(name)
        if before.captured and after.captured:
            _compare(before.value, after.value, name, out)
        elif before.captured != after.captured:
            missing, part = (names[0], before) if not before.captured else (names[1], after)
            out.append(f"? {name}: not captured in the {missing} settings ({part.not_captured})")
    return out
