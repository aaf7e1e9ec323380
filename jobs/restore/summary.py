"""What a restore tells its user: the summary line, the keys it could not write, and the
failures file (--failures-out), also when the restore failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from backup_lambda.errors import UserInputError
from backup_lambda.layout import format_time_us
from jobs.cli.output import emit_json
from jobs.restore.restorer import RestoreReport

NAMED_IN_TEXT = 10  # keys named in the text output; --json and --failures-out hold all


def summary_lines(report: RestoreReport) -> list[str]:
    """The summary line, then (if any) the keys that could not be written."""
    if report.dry_run:
        verb_put, verb_delete = "would put", "would delete"
    else:
        verb_put, verb_delete = "put", "deleted"
    source = (
        f"snapshot {report.snapshot} + changes by {report.change_source}"
        if report.snapshot
        else f"every change, by {report.change_source}"
    )
    where = "in place" if report.in_place else report.mode
    failed = len(report.failures)
    line = (
        f"{report.source} as of {format_time_us(report.as_of_us)} -> {report.target} "
        f"({where}, from {source}): {report.state_items} items; {verb_put} {report.puts}, "
        f"{verb_delete} {report.deletes}, unchanged {report.unchanged}"
        + ("" if report.dry_run else f", failed {failed}")
        + f"; {report.writes.requests} BatchWriteItem calls; {report.seconds:.2f}s"
        + ("; verified" if report.verified else "")
    )
    if report.stopped:
        planned = report.plan
        line += "; STOPPED before the end" + (
            f" (planned: put {planned.puts}, delete {planned.deletes})" if planned else ""
        )
    lines = [line]
    lines += [f"needs --yes: {reason}" for reason in report.needs_yes]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} unreadable item versions (--skip-corrupt):")
        lines += [f"  {entry.reason}" for entry in report.skipped[:NAMED_IN_TEXT]]
        if len(report.skipped) > NAMED_IN_TEXT:
            lines.append(f"  ... and {len(report.skipped) - NAMED_IN_TEXT} more (all in --json)")
    for failure in report.failures[:NAMED_IN_TEXT]:
        key = json.dumps(failure.key, sort_keys=True) if failure.key else "(unknown key)"
        lines.append(f"not written ({failure.action}): {key}: {failure.reason}")
    if failed > NAMED_IN_TEXT:
        lines.append(
            f"... and {failed - NAMED_IN_TEXT} more not written (all of them with --json or "
            "--failures-out FILE)"
        )
    return lines


def write_failures(path: str, report: RestoreReport) -> None:
    """One JSON object a line: {"key", "action", "reason"}. `restore --keys FILE` reads
    the file back, to retry just those items."""
    lines = [json.dumps(f.as_json(), sort_keys=True) for f in report.failures]
    try:
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as e:
        raise UserInputError(f"--failures-out {path}: {e.strerror}") from None


def report_to(report: RestoreReport, json_output: bool, show: Callable[[str], None]) -> None:
    if json_output:
        emit_json(report.as_json())
        return
    for line in summary_lines(report):
        show(line)
