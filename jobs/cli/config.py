"""Settings the AWS CLI way: a flag beats the environment, which beats the config file,
which beats the built-in default.

A setting is declared once (`Setting`), and every command that offers it as a flag adds
the flag with `jobs.cli.options.add_setting`: the flag's argparse default is None ("not
given"), and `apply()` fills in the rest after parsing and records where each value came
from (`ddb-backup config` prints that).

Config files are TOML (read with the standard library):

    ./ddb-backup.toml                       (the working directory; wins key by key)
    ~/.config/ddb-backup/config.toml        ($XDG_CONFIG_HOME/ddb-backup/config.toml)

or only the file named by DDB_BACKUP_CONFIG. Top-level keys are the settings; settings
marked per-table may also sit in a `[tables.<name>]` section, which wins over the top level
for that table:

    bucket = "acme-backups"
    prefix = "prod"
    [tables.orders]
    shard_digits = 2
    keep_last = 48
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_lambda.errors import UserInputError

CONFIG_ENV = "DDB_BACKUP_CONFIG"
LOCAL_FILE = "ddb-backup.toml"


@dataclass(frozen=True)
class Setting:
    """One configurable value: its config key (also the argparse dest), how text becomes a
    value, its default, the environment variables that set it, and whether a
    `[tables.<name>]` section may set it per table."""

    name: str
    parse: Callable[[str], Any] = str
    default: Any = None
    env: tuple[str, ...] = ()
    per_table: bool = False
    help: str = ""
    # AWS settings that boto3 reads from the environment itself: a value from there is
    # left to boto3 (so AWS_ENDPOINT_URL_S3, profiles' regions etc. keep working).
    boto_reads_env: bool = False
    key: str = ""  # the config file key, if not the name

    @property
    def file_key(self) -> str:
        return self.key or self.name


SETTINGS: dict[str, Setting] = {}  # by argparse dest


def register(setting: Setting) -> Setting:
    """Declare a setting (once; module import time)."""
    known = SETTINGS.get(setting.name)
    if known is not None and known != setting:
        raise ValueError(f"setting {setting.name!r} is declared twice, differently")
    SETTINGS[setting.name] = setting
    return setting


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a value, got an empty string")
    return text.strip()


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError(f"expected a whole number >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"expected a whole number >= 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise ValueError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"expected a number > 0, got {text!r}")
    return value


def _shard_digits(text: str) -> int:
    value = _int(text)
    if value not in {0, 1, 2, 3}:
        raise ValueError(f"expected 0, 1, 2 or 3, got {text!r}")
    return value


BUCKET = register(Setting("bucket", _nonempty, env=("BACKUP_BUCKET",), help="the backup bucket"))
PREFIX = register(
    Setting("prefix", str, default="", env=("BACKUP_PREFIX",), help="folder in the bucket")
)
PROFILE = register(
    Setting(
        "profile",
        _nonempty,
        env=("AWS_PROFILE",),
        help="AWS named profile",
        boto_reads_env=True,
    )
)
REGION = register(
    Setting(
        "region",
        _nonempty,
        env=("AWS_REGION", "AWS_DEFAULT_REGION"),
        help="AWS region (else the profile's, else us-east-1)",
        boto_reads_env=True,
    )
)
ENDPOINT_URL = register(
    Setting(
        "endpoint_url",
        _nonempty,
        env=("AWS_ENDPOINT_URL",),
        help="AWS endpoint override",
        boto_reads_env=True,
    )
)
# Options people set once per table.
SHARD_DIGITS = register(
    Setting("shard_digits", _shard_digits, per_table=True, help="hex digits per unit")
)
KEEP_LAST = register(
    Setting("keep_last", _positive_int, per_table=True, help="snapshots expire keeps")
)
KEEP_DAYS = register(
    Setting("keep_days", _non_negative, per_table=True, help="expire keeps snapshots this recent")
)
MAX_WCU = register(
    Setting("max_wcu", _positive_int, per_table=True, help="restore's write capacity cap")
)
RESTORE_TARGET = register(
    Setting(
        "to",
        _nonempty,
        per_table=True,
        help="restore's target table; may use {table}, {as_of} and {date}",
        key="restore_to",
    )
)
# What the scheduled Lambda handlers read from their environment, read the same way here.
TABLES = register(
    Setting(
        "tables",
        _nonempty,
        env=("BACKUP_TABLES",),
        help="tables of `scheduled`",
        key="scheduled_tables",  # `tables` in a file holds the per-table sections
    )
)
SETTLE = register(
    Setting(
        "settle",
        _positive_int,
        default=300,
        env=("SETTLE_SECONDS",),
        per_table=True,
        help="seconds the default as-of stays behind now",
    )
)
MAX_RPO = register(
    Setting(
        "max_rpo",
        _positive_int,
        env=("MAX_RPO_SECONDS",),
        per_table=True,
        help="drill: longest recovery point, seconds",
    )
)
MAX_RESTORE_SECONDS = register(
    Setting(
        "max_restore_seconds",
        _positive_int,
        env=("MAX_RESTORE_SECONDS",),
        per_table=True,
        help="drill: longest restore, seconds",
    )
)
VERIFY_JOURNAL_EVERY = register(
    Setting(
        "verify_journal_every",
        _non_negative_int,
        default=24,
        env=("VERIFY_JOURNAL_EVERY",),
        help="scheduled: every Nth compaction that reads the journal verifies it (0: never)",
    )
)
FULL_EVERY = register(
    Setting(
        "full_every",
        _non_negative_int,
        default=0,
        env=("FULL_EVERY",),
        help="scheduled: every Nth snapshot of a chain is full (0: the delta policy alone)",
    )
)

MAX_QUIET_HOURS = register(
    Setting(
        "max_quiet_hours",
        _positive_number,
        default=24,
        per_table=True,
        help="status: longest time without a change written, hours",
    )
)
MAX_SNAPSHOT_AGE_HOURS = register(
    Setting(
        "max_snapshot_age_hours",
        _positive_number,
        default=26,
        per_table=True,
        help="status: oldest newest snapshot while newer changes wait, hours",
    )
)


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    values: Mapping[str, Any]
    tables: Mapping[str, Mapping[str, Any]]


def config_paths(env: Mapping[str, str], cwd: Path | None = None) -> list[Path]:
    """The files read, strongest first (only existing ones count)."""
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return [Path(explicit).expanduser()]
    home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return [(cwd or Path.cwd()) / LOCAL_FILE, Path(home) / "ddb-backup" / "config.toml"]


def by_file_key() -> dict[str, Setting]:
    return {s.file_key: s for s in SETTINGS.values()}


def _check_keys(path: Path, where: str, values: Mapping[str, Any], per_table_only: bool) -> None:
    """Every key is a known setting with a valid value (checked whichever command runs)."""
    keys = by_file_key()
    for key, value in values.items():
        setting = keys.get(key)
        if setting is None:
            known = ", ".join(sorted(keys))
            raise UserInputError(f"{path}: unknown setting {where}{key!r} (known: {known})")
        if per_table_only and not setting.per_table:
            raise UserInputError(
                f"{path}: {key!r} cannot be set per table (move it to the top level)"
            )
        _parse(setting, value, f"{path} [{where.rstrip('.')}]" if where else str(path))


def load_file(path: Path) -> ConfigFile | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserInputError(f"{path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserInputError(f"{path}: not valid TOML: {e}") from None
    tables_raw = data.pop("tables", {})
    if not isinstance(tables_raw, dict) or not all(
        isinstance(v, dict) for v in tables_raw.values()
    ):
        raise UserInputError(f"{path}: [tables.<name>] sections hold settings of one table")
    _check_keys(path, "", data, per_table_only=False)
    for table, section in tables_raw.items():
        _check_keys(path, f"tables.{table}.", section, per_table_only=True)
    return ConfigFile(path, data, tables_raw)


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: str  # "flag", "env NAME", "<file> [tables.T]", "default"


@dataclass
class Config:
    """The config files that exist, strongest first, and the environment."""

    env: Mapping[str, str]
    files: list[ConfigFile] = field(default_factory=list)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
        env = os.environ if env is None else env
        paths = config_paths(env, cwd)
        files = [f for f in (load_file(p) for p in paths) if f is not None]
        if env.get(CONFIG_ENV) and not files:
            raise UserInputError(f"{CONFIG_ENV}={env[CONFIG_ENV]}: no such file")
        return cls(env, files)

    def resolve(self, setting: Setting, table: str | None = None) -> Resolved:
        """Environment, then files (a table's section before the top level), then default."""
        for name in setting.env:
            text = self.env.get(name)
            if text:
                return Resolved(_parse(setting, text, f"environment {name}"), f"env {name}")
        for config_file in self.files:
            section = config_file.tables.get(table, {}) if table and setting.per_table else {}
            key = setting.file_key
            if key in section:
                where = f"{config_file.path} [tables.{table}]"
                return Resolved(_parse(setting, section[key], where), where)
            if key in config_file.values:
                where = str(config_file.path)
                return Resolved(_parse(setting, config_file.values[key], where), where)
        return Resolved(setting.default, "default")

    def tables(self) -> list[str]:
        """Tables that have a section in some config file."""
        return sorted({t for f in self.files for t in f.tables})


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise UserInputError(f"{where}: {setting.file_key} must be a string or a number")
    try:
        return setting.parse(str(raw))
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise UserInputError(f"{where}: {setting.file_key}: {e}") from None


def apply(args: argparse.Namespace, config: Config) -> dict[str, Resolved]:
    """Fill every setting the command offers but the user did not pass; returns the source
    of each. A setting is offered when the parsed arguments have its dest."""
    table = getattr(args, "table", None)
    sources: dict[str, Resolved] = {}
    for name, setting in SETTINGS.items():
        if not hasattr(args, name):
            continue
        given = getattr(args, name)
        if given is not None:
            sources[name] = Resolved(given, "flag")
            continue
        resolved = config.resolve(setting, table if isinstance(table, str) else None)
        sources[name] = resolved
        setattr(args, name, resolved.value)
    for name in getattr(args, "required_settings", ()):
        if getattr(args, name, None) is None:
            raise UserInputError(missing_message(SETTINGS[name]))
    return sources


def flag_of(setting: Setting) -> str:
    return "--" + setting.name.replace("_", "-")


def missing_message(setting: Setting) -> str:
    ways = [f"pass {flag_of(setting)}"]
    ways += [f"set {name}" for name in setting.env[:1]]
    ways.append(f"put {setting.file_key} = ... in {LOCAL_FILE}")
    return f"no {setting.name.replace('_', ' ')}: " + ", ".join(ways[:-1]) + f" or {ways[-1]}"


def aws_value(resolved: Resolved | None, setting: Setting) -> Any:
    """What to hand boto3 explicitly: a flag's or a file's value. An environment value is
    left to boto3, which reads it itself (with its service-specific variants)."""
    if resolved is None or resolved.value is None:
        return None
    if setting.boto_reads_env and resolved.source.startswith("env "):
        return None
    return resolved.value
