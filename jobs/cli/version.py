"""The installed package's version."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("ddb-backup")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
