"""`ddb-backup config`: the effective settings and where each came from."""

from __future__ import annotations

import argparse
import os
from typing import Any

from jobs.cli import config
from jobs.cli.options import add_aws_options, add_setting
from jobs.cli.output import emit_json, print_table


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "config",
        help="show the effective settings and where each came from",
        description="Prints every setting with its value and source. Precedence, as in the "
        "AWS CLI: flag > environment > config file > default. Config files (TOML): "
        f"./{config.LOCAL_FILE}, then ~/.config/ddb-backup/config.toml, or only the file "
        f"named by {config.CONFIG_ENV}; per-table settings go in [tables.<name>] sections.",
    )
    add_setting(parser, config.BUCKET, "--bucket", help="the backup bucket")
    parser.add_argument(
        "--table", help="also resolve the per-table settings of this table (default: none)"
    )
    add_setting(parser, config.PREFIX, "--prefix", help="folder in the bucket")
    add_aws_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = config.Config.load()
    given: dict[str, config.Resolved] = getattr(args, "setting_sources", {})
    rows: list[dict[str, Any]] = []
    for name, setting in sorted(config.SETTINGS.items(), key=lambda kv: kv[1].file_key):
        resolved = given.get(name) or loaded.resolve(setting, args.table)
        rows.append(
            {
                "setting": setting.file_key,
                "value": resolved.value,
                "source": resolved.source,
                "per_table": setting.per_table,
            }
        )
    paths = config.config_paths(os.environ)
    files = [{"path": str(p), "found": p.is_file()} for p in paths]
    if args.json:
        emit_json({"table": args.table, "settings": rows, "files": files})
        return 0
    for entry in files:
        print(f"config file {entry['path']}: {'read' if entry['found'] else 'not found'}")
    print_table(
        ["SETTING", "VALUE", "SOURCE"],
        [
            [r["setting"], "-" if r["value"] in (None, "") else str(r["value"]), r["source"]]
            for r in rows
        ],
    )
    if not args.table and loaded.tables():
        print(f"per-table sections: {', '.join(loaded.tables())} (show one with --table)")
    return 0
