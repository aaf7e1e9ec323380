"""The `ddb-backup` command line: the command table, and one clear line per failure."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence

from botocore.exceptions import BotoCoreError, NoCredentialsError, ProfileNotFound

from backup_lambda.errors import (
    BackupError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    UserInputError,
)
from jobs.cli import config
from jobs.cli.options import CliParser, common_options
from jobs.cli.version import package_version
from jobs.ops.drill import DrillFailedError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_DRILL_FAILED = 5  # also: a health check (status) missed a threshold
EXIT_INTEGRITY = 6  # stored data does not match what was recorded about it

Command = Callable[[argparse.Namespace], int]

# Optional dependencies: the import name -> the extra that installs it.
OPTIONAL_MODULES = {"distributed": "dask", "dask": "dask", "moto": "demo", "flask": "demo"}


def _common(
    require_table: bool = True, table_help: str = "", tables: str = "one"
) -> argparse.ArgumentParser:
    return common_options(require_table=require_table, table_help=table_help, tables=tables)


def build_parser() -> argparse.ArgumentParser:
    from jobs.backup import changes, compact, history, import_export, settings, snapshots, tables
    from jobs.demo import command as demo
    from jobs.ops import backfill, drill, effective_config, expire, redrive, scheduled, status
    from jobs.query import command as query
    from jobs.restore import command as restore

    parser = CliParser(
        prog="ddb-backup",
        description="Incremental, point-in-time DynamoDB backups on S3.",
        epilog="Times are ISO-8601 with an offset or Z (2026-11-28T14:00:00Z), or epoch "
        "seconds. --bucket and --prefix default from BACKUP_BUCKET/BACKUP_PREFIX or "
        "ddb-backup.toml (see `ddb-backup config`). Exit status: 0 ok, 1 error, 2 bad usage "
        "or input, 3 not found, 4 another run committed first, 5 a drill or health check "
        "missed a threshold, 6 stored data failed verification.",
    )
    parser.add_argument("--version", action="version", version=f"ddb-backup {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compact.register(commands, _common())
    snapshots.register(commands, _common())
    restore.register(commands, _common())
    query.register(commands, _common())
    backfill.register(commands, _common())
    import_export.register(commands, _common())
    expire.register(commands, _common())
    drill.register(commands, _common())
    scheduled.register(
        commands, _common(require_table=False, table_help="default: --tables or BACKUP_TABLES")
    )
    history.register(commands, _common())
    changes.register(commands, _common())
    redrive.register(
        commands, _common(require_table=False, table_help="default: every table in the queue")
    )
    settings.register(commands, _common())
    tables.register(commands, _common(require_table=False, tables="none"))
    status.register(
        commands,
        _common(require_table=False, table_help="default: every table found", tables="many"),
    )
    effective_config.register(commands)
    demo.register(commands, cli=main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command = args.run
    try:
        args.setting_sources = config.apply(args, config.Config.load())
        _require_the_executor(args)
        return run(args)
    except UserInputError as e:
        return _fail(str(e), EXIT_USAGE)
    except NotFoundError as e:
        return _fail(str(e), EXIT_NOT_FOUND)
    except ConflictError as e:
        return _fail(str(e), EXIT_CONFLICT)
    except DrillFailedError as e:
        return _fail(f"drill failed: {e}", EXIT_DRILL_FAILED)
    except IntegrityError as e:
        return _fail(str(e), EXIT_INTEGRITY)
    except BackupError as e:
        return _fail(str(e), EXIT_ERROR)
    except NoCredentialsError:
        return _fail(
            "no AWS credentials found (pass --profile, set AWS_PROFILE or AWS_ACCESS_KEY_ID)",
            EXIT_ERROR,
        )
    except ProfileNotFound as e:
        return _fail(f"{e} (--profile, AWS_PROFILE or profile in ddb-backup.toml)", EXIT_USAGE)
    except BotoCoreError as e:
        return _fail(f"AWS request failed: {e}", EXIT_ERROR)
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        extra = OPTIONAL_MODULES.get(root)
        if extra is None:
            raise
        return _fail(
            f"this needs the optional package {root!r}: pip install 'ddb-backup[{extra}]'",
            EXIT_ERROR,
        )
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _require_the_executor(args: argparse.Namespace) -> None:
    """A dask-only flag without dask is one line before any request (not after the
    bucket's checks, which would then name a problem the user did not ask about)."""
    wants_dask = getattr(args, "executor", None) == "dask" or getattr(args, "scheduler", None)
    if wants_dask and importlib.util.find_spec("distributed") is None:
        raise ModuleNotFoundError("No module named 'distributed'", name="distributed")


def _fail(message: str, code: int) -> int:
    print(f"ddb-backup: error: {message}", file=sys.stderr)
    return code
