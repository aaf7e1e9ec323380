"""The options every command shares, and how commands add configurable ones.

Conventions (docs/CLI.md has them for people adding commands):
- Every option has help text, and the help shows its default: `HelpFormatter` appends
  "(default: X)" unless the text already says "default" or there is none to show (a
  switch, a required option). An option whose absence means something ("now", "the
  newest snapshot") says so in its help with the word "default".
- An option people set once (per table or per machine) is a `jobs.cli.config.Setting`,
  added with `add_setting`: flag > environment > config file > default.
- One meaning per flag name across commands.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobs.cli import config
from jobs.cli.config import Setting

_SWITCHES = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._CountAction,
)


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or isinstance(action, _SWITCHES)
            or action.required
            or action.default in (None, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class CliParser(argparse.ArgumentParser):
    """argparse with the house help format (subcommand parsers inherit the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def setting_help(setting: Setting, text: str | None = None, none_means: str = "none") -> str:
    """Help text naming the default, the environment variable and the config key."""
    where = [f"env {name}" for name in setting.env[:1]]
    where.append(f"config {setting.file_key}" + (" per table" if setting.per_table else ""))
    if none_means == "required":
        return f"{text or setting.help} (required: the flag, {', '.join(where)})"
    shown = none_means if setting.default in (None, "") else setting.default
    return f"{text or setting.help} (default: {shown}; {', '.join(where)})"


def add_setting(
    parser: argparse.ArgumentParser,
    setting: Setting,
    *flags: str,
    required: bool = False,
    help: str | None = None,
    none_means: str = "none",
    **kwargs: Any,
) -> argparse.Action:
    """A flag for a configurable setting: flag > environment > config file > default.
    `required`: the command fails (exit 2) when no source gives a value; `none_means`: what
    having no value means, for the help ("no limit", "by size")."""
    action = parser.add_argument(
        *(flags or (config.flag_of(setting),)),
        dest=setting.name,
        default=None,
        help=setting_help(setting, help, "required" if required else none_means),
        **kwargs,
    )
    if required:
        needed = tuple(parser.get_default("required_settings") or ())
        parser.set_defaults(required_settings=(*needed, setting.name))
    return action


def common_options(
    require_table: bool = True,
    table_help: str = "",
    require_bucket: bool = True,
    tables: str = "one",
) -> argparse.ArgumentParser:
    """The parent parser of every command that works on a bucket. An optional --table
    says in `table_help` what its absence means (e.g. "default: every table"). `tables`:
    "one" (--table T), "many" (--table T repeatable: a list) or "none" (no --table)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_setting(parent, config.BUCKET, "--bucket", required=require_bucket)
    if tables != "none":
        parent.add_argument(
            "--table",
            required=require_table,
            action="append" if tables == "many" else "store",
            help="source table name as recorded in the backup"
            + ("; repeat for several" if tables == "many" else "")
            + (f" ({table_help})" if table_help else ""),
        )
    add_setting(
        parent, config.PREFIX, "--prefix", help="folder in the bucket", none_means="the root"
    )
    add_aws_options(parent)
    parent.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    parent.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or notes on stderr"
    )
    return parent


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    """--profile, --region, --endpoint-url: as in the AWS CLI."""
    add_setting(
        parser,
        config.PROFILE,
        "--profile",
        help="AWS named profile to use",
        none_means="boto3's default credentials",
    )
    add_setting(
        parser,
        config.REGION,
        "--region",
        help="AWS region",
        none_means="the profile's, else us-east-1",
    )
    add_setting(
        parser,
        config.ENDPOINT_URL,
        "--endpoint-url",
        help="AWS endpoint URL override",
        none_means="AWS's endpoints",
    )
