"""Which tables a bucket holds backups of, found from the layout alone (docs/FORMAT.md).

A folder `<prefix>/<table>/` is a backed-up table when its `v1/` folder holds the item
objects, the journal or snapshots. Folders are listed with Delimiter="/" (one LIST per
folder, paginated), level by level below the prefix, never descending into a table's own
`v1/` folder: the cost is a few LISTs per table, not a listing of the objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import LAYOUT_DIR, normalize_prefix
from compaction.s3errors import translate

# A table's v1/ folder holds at least one of these once anything was backed up.
DATA_FOLDERS = frozenset({"items", "journal", "snapshots"})
# Prefixes are folders of folders: stop this many levels below the starting prefix.
MAX_DEPTH = 6


@dataclass(frozen=True)
class BackedUpTable:
    """A table with a backup: its prefix (normalized, '' for the bucket root), its name,
    and the folders its `v1/` holds (items, journal, snapshots, drills, ...)."""

    prefix: str
    table: str
    holds: tuple[str, ...]


def subfolders(s3: Any, bucket: str, folder: str) -> list[str]:
    """The folders directly under `folder` ('' or ending in '/'), as full prefixes, sorted."""
    found: list[str] = []
    params: dict[str, Any] = {"Bucket": bucket, "Delimiter": "/"}
    if folder:
        params["Prefix"] = folder
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**params):
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e
    return sorted(found)


def find_tables(
    s3: Any, bucket: str, prefix: str = "", *, max_depth: int = MAX_DEPTH, workers: int = 8
) -> list[BackedUpTable]:
    """Every backed-up table under `prefix` (and folders below it), by prefix then name."""
    root = normalize_prefix(prefix)
    start = f"{root}/" if root else ""
    tables: list[BackedUpTable] = []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="discover") as pool:
        level: list[tuple[str, list[str] | None]] = [
            (f, None) for f in subfolders(s3, bucket, start)
        ]
        for _ in range(max_depth):
            if not level:
                break
            found = list(pool.map(lambda entry: _examine(s3, bucket, *entry), level))
            tables += [table for table, _ in found if table is not None]
            level = [child for _, children in found for child in children]
    return sorted(tables, key=lambda t: (t.prefix, t.table))


def _examine(
    s3: Any, bucket: str, folder: str, listed: list[str] | None
) -> tuple[BackedUpTable | None, list[tuple[str, list[str] | None]]]:
    """Whether `folder` is a table's folder, and its other subfolders to look into next
    (with their own subfolders where they are already listed)."""
    children = listed if listed is not None else subfolders(s3, bucket, folder)
    layout = f"{folder}{LAYOUT_DIR}/"
    known: dict[str, list[str]] = {}
    table = None
    if layout in children:
        inside = subfolders(s3, bucket, layout)
        holds = _names(inside, layout)
        if DATA_FOLDERS & set(holds):
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            parent = folder.rstrip("/")[: -len(name)].rstrip("/")
            table = BackedUpTable(parent, name, tuple(holds))
            children = [c for c in children if c != layout]
        else:
            known[layout] = inside  # a folder that happens to be named v1: look into it
    return table, [(c, known.get(c)) for c in children]


def _names(folders: Iterable[str], parent: str) -> list[str]:
    return sorted(f[len(parent) :].rstrip("/") for f in folders)
