"""The restore's table-settings flags: parsing them into SettingsOverrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptSnapshotError, UserInputError
from compaction.tablesettings import TableSettings
from jobs.cli.clients import AwsSettings, make_client
from jobs.restore.tablesettings import BILLING_MODES, SettingsOverrides

_CREATE_ONLY = ("billing_mode", "no_indexes", "no_ttl", "no_stream", "tags", "kms_key")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "table settings (with --create-table; default: as recorded with the backup)"
    )
    group.add_argument(
        "--billing-mode", choices=BILLING_MODES, help="(default: the recorded billing mode)"
    )
    group.add_argument(
        "--no-indexes", action="store_true", help="create no global or local secondary index"
    )
    group.add_argument("--no-ttl", action="store_true", help="leave time to live off")
    group.add_argument("--no-stream", action="store_true", help="create no stream")
    group.add_argument(
        "--tags",
        action="append",
        default=[],
        metavar="K=V",
        help="a tag to add (or change); repeatable (default: the recorded tags only)",
    )
    group.add_argument(
        "--kms-key",
        metavar="KEY",
        help="encrypt with this KMS key, id or ARN (default: the recorded key)",
    )
    group.add_argument(
        "--settings-from",
        metavar="FILE",
        help="settings document to create from, e.g. `ddb-backup settings --json` edited "
        "(default: the settings recorded with the backup)",
    )
    group.add_argument(
        "--skip-unapplicable",
        action="store_true",
        help="go on without a recorded setting that cannot be applied (it is reported)",
    )


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserInputError(f"--tags {text!r}: write KEY=VALUE")
    return key, value


def load_settings_file(path: str) -> TableSettings:
    try:
        body = Path(path).read_bytes()
    except OSError as e:
        raise UserInputError(f"--settings-from {path}: {e.strerror or e}") from None
    try:
        return TableSettings.from_json(body, f"--settings-from {path}")
    except CorruptSnapshotError as e:
        raise UserInputError(str(e)) from None


def overrides_from(args: argparse.Namespace) -> SettingsOverrides:
    given = [name for name in _CREATE_ONLY if getattr(args, name)]
    if args.settings_from:
        given.append("settings_from")
    if given and not args.create_table:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserInputError(
            f"{flags} only apply when the restore creates the table: add --create-table"
        )
    return SettingsOverrides(
        billing_mode=args.billing_mode,
        no_indexes=args.no_indexes,
        no_ttl=args.no_ttl,
        no_stream=args.no_stream,
        tags=tuple(_tag(t) for t in args.tags),
        kms_key=args.kms_key,
        settings_from=load_settings_file(args.settings_from) if args.settings_from else None,
        skip_unapplicable=args.skip_unapplicable,
    )


def caller_account(settings: AwsSettings) -> str | None:
    """The account the restore runs in (to check a recorded KMS key), or None if unknown."""
    try:
        identity = make_client("sts", settings).get_caller_identity()
    except (ClientError, BotoCoreError):
        return None
    account = identity.get("Account")
    return str(account) if account else None
