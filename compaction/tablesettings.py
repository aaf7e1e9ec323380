"""A table's settings, captured with every snapshot: the document and the capture.

The document holds, per part, either the part's value (AWS's own field names, trimmed of
what is not a setting: counts, sizes, statuses, times, ARNs of the moment) or the reason it
was not captured. The capture is a handful of read-only calls; a call that fails (no
permission, an API this endpoint lacks) only marks its part "not captured", and the whole
capture runs beside the compaction with a time budget, so it never fails or holds one up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from backup_lambda.errors import CorruptSnapshotError
from backup_lambda.layout import format_time_us

SETTINGS_FORMAT = "ddb-backup-table-settings"
SETTINGS_VERSION = 1
FILE_FORMAT = "table-settings"  # the DataFile format of the document in a manifest

TABLE = "table"  # DescribeTable: keys, attributes, billing, indexes, stream, SSE, class, ...
TIME_TO_LIVE = "time_to_live"  # DescribeTimeToLive
CONTINUOUS_BACKUPS = "continuous_backups"  # DescribeContinuousBackups (PITR)
TAGS = "tags"  # ListTagsOfResource
RESOURCE_POLICY = "resource_policy"  # GetResourcePolicy
KINESIS = "kinesis_streaming_destinations"  # DescribeKinesisStreamingDestination
AUTO_SCALING = "auto_scaling"  # Application Auto Scaling targets and policies
PARTS = (TABLE, TIME_TO_LIVE, CONTINUOUS_BACKUPS, TAGS, RESOURCE_POLICY, KINESIS, AUTO_SCALING)

DEFAULT_CAPTURE_SECONDS = 30.0


@dataclass(frozen=True)
class Part:
    """One part of the settings: its value (None may mean "none", e.g. no resource policy)
    or, when it could not be read, why. In a merged view (`effective`), also when and by
    which snapshot or backfill it was captured."""

    value: Any = None
    not_captured: str | None = None
    captured_at_us: int | None = None
    source: str | None = None

    @property
    def captured(self) -> bool:
        return self.not_captured is None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = (
            {"value": self.value} if self.captured else {"not_captured": self.not_captured}
        )
        if self.captured_at_us is not None:
            out["captured_at"] = format_time_us(self.captured_at_us)
            out["captured_at_us"] = self.captured_at_us
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass(frozen=True)
class TableSettings:
    table: str
    captured_at_us: int
    parts: Mapping[str, Part] = field(default_factory=dict)
    region: str | None = None
    table_arn: str | None = None

    def part(self, name: str) -> Part:
        return self.parts.get(name) or Part(not_captured="not in this document")

    def value(self, name: str) -> Any:
        """The part's value, or None when it was not captured."""
        part = self.part(name)
        return part.value if part.captured else None

    def captured(self, name: str) -> bool:
        return self.part(name).captured

    def to_json(self) -> bytes:
        document = {
            "format": SETTINGS_FORMAT,
            "version": SETTINGS_VERSION,
            "table": self.table,
            "region": self.region,
            "table_arn": self.table_arn,
            "captured_at": format_time_us(self.captured_at_us),
            "captured_at_us": self.captured_at_us,
            "parts": {name: self.part(name).as_json() for name in PARTS},
        }
        return json.dumps(document, indent=1, ensure_ascii=False, sort_keys=False).encode()

    @classmethod
    def from_json(cls, body: bytes | str, where: str) -> TableSettings:
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or doc.get("format") != SETTINGS_FORMAT:
                raise CorruptSnapshotError(f"{where}: not a ddb-backup table settings document")
            if doc.get("version") != SETTINGS_VERSION:
                raise CorruptSnapshotError(
                    f"{where}: settings document version {doc.get('version')!r} is not one "
                    f"this ddb-backup reads ({SETTINGS_VERSION}); upgrade ddb-backup"
                )
            parts = {}
            for name, raw in doc["parts"].items():
                if not isinstance(raw, dict) or not ({"value", "not_captured"} & set(raw)):
                    raise ValueError(f"part {name!r} has neither a value nor a reason")
                parts[name] = Part(
                    value=raw.get("value"),
                    not_captured=raw.get("not_captured"),
                    captured_at_us=raw.get("captured_at_us"),
                    source=raw.get("source"),
                )
            return cls(
                table=str(doc["table"]),
                captured_at_us=int(doc["captured_at_us"]),
                parts=parts,
                region=doc.get("region"),
                table_arn=doc.get("table_arn"),
            )
        except CorruptSnapshotError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptSnapshotError(f"{where}: invalid table settings document ({e})") from e


def not_captured(table: str, reason: str, captured_at_us: int) -> TableSettings:
    """A document whose every part says why it is missing."""
    return TableSettings(table, captured_at_us, {name: Part(not_captured=reason) for name in PARTS})


# --- normalising AWS's responses to settings -----------------------------------------------


def _throughput(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    return {k: raw[k] for k in ("ReadCapacityUnits", "WriteCapacityUnits") if k in raw}


def _on_demand(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    kept = {k: raw[k] for k in ("MaxReadRequestUnits", "MaxWriteRequestUnits") if k in raw}
    return kept or None


def _warm(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    kept = {k: raw[k] for k in ("ReadUnitsPerSecond", "WriteUnitsPerSecond") if k in raw}
    return kept or None


def _projection(raw: Mapping[str, Any]) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": raw.get("ProjectionType", "ALL")}
    if raw.get("NonKeyAttributes"):
        projection["NonKeyAttributes"] = sorted(raw["NonKeyAttributes"])
    return projection


def _key_schema(raw: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    ordered = sorted(raw, key=lambda k: k["KeyType"] != "HASH")
    return [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in ordered]


def _put(target: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        target[name] = value


def normalize_table(description: Mapping[str, Any]) -> dict[str, Any]:
    """DescribeTable's Table, reduced to what defines the table (the settings)."""
    billing = (description.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    on_demand = billing == "PAY_PER_REQUEST"
    table: dict[str, Any] = {
        "KeySchema": _key_schema(description["KeySchema"]),
        "AttributeDefinitions": sorted(
            (
                {"AttributeName": a["AttributeName"], "AttributeType": a["AttributeType"]}
                for a in description["AttributeDefinitions"]
            ),
            key=lambda a: a["AttributeName"],
        ),
        "BillingMode": billing,
    }
    if not on_demand:  # on-demand tables report 0/0
        _put(table, "ProvisionedThroughput", _throughput(description.get("ProvisionedThroughput")))
    _put(table, "OnDemandThroughput", _on_demand(description.get("OnDemandThroughput")))
    _put(table, "WarmThroughput", _warm(description.get("WarmThroughput")))
    indexes = []
    for raw in description.get("GlobalSecondaryIndexes") or []:
        index: dict[str, Any] = {
            "IndexName": raw["IndexName"],
            "KeySchema": _key_schema(raw["KeySchema"]),
            "Projection": _projection(raw.get("Projection") or {}),
        }
        if not on_demand:
            _put(index, "ProvisionedThroughput", _throughput(raw.get("ProvisionedThroughput")))
        _put(index, "OnDemandThroughput", _on_demand(raw.get("OnDemandThroughput")))
        _put(index, "WarmThroughput", _warm(raw.get("WarmThroughput")))
        indexes.append(index)
    if indexes:
        table["GlobalSecondaryIndexes"] = sorted(indexes, key=lambda i: i["IndexName"])
    local = [
        {
            "IndexName": raw["IndexName"],
            "KeySchema": _key_schema(raw["KeySchema"]),
            "Projection": _projection(raw.get("Projection") or {}),
        }
        for raw in description.get("LocalSecondaryIndexes") or []
    ]
    if local:
        table["LocalSecondaryIndexes"] = sorted(local, key=lambda i: i["IndexName"])
    stream = description.get("StreamSpecification") or {}
    table["StreamSpecification"] = (
        {"StreamEnabled": True, "StreamViewType": stream.get("StreamViewType")}
        if stream.get("StreamEnabled")
        else {"StreamEnabled": False}
    )
    sse = description.get("SSEDescription") or {}
    if sse.get("Status") in {"ENABLED", "ENABLING", "UPDATING"}:
        table["SSE"] = {"SSEType": sse.get("SSEType", "KMS")}
        _put(table["SSE"], "KMSMasterKeyArn", sse.get("KMSMasterKeyArn"))
    else:
        table["SSE"] = {"SSEType": "AWS_OWNED"}  # DynamoDB's default: an AWS owned key
    _put(table, "TableClass", (description.get("TableClassSummary") or {}).get("TableClass"))
    table["DeletionProtectionEnabled"] = bool(description.get("DeletionProtectionEnabled"))
    replicas = sorted(r["RegionName"] for r in description.get("Replicas") or [])
    if replicas:
        table["ReplicaRegions"] = replicas
    return table


def normalize_ttl(description: Mapping[str, Any]) -> dict[str, Any]:
    ttl = description.get("TimeToLiveDescription") or {}
    out = {"TimeToLiveStatus": ttl.get("TimeToLiveStatus", "DISABLED")}
    _put(out, "AttributeName", ttl.get("AttributeName"))
    return out


def normalize_backups(description: Mapping[str, Any]) -> dict[str, Any]:
    backups = description.get("ContinuousBackupsDescription") or {}
    pitr = backups.get("PointInTimeRecoveryDescription") or {}
    out = {"PointInTimeRecoveryStatus": pitr.get("PointInTimeRecoveryStatus", "DISABLED")}
    _put(out, "RecoveryPeriodInDays", pitr.get("RecoveryPeriodInDays"))
    return out


_POLICY_KEYS = (
    "PolicyName",
    "ResourceId",
    "ScalableDimension",
    "PolicyType",
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
)


def normalize_scaling(targets: list[Mapping[str, Any]], policies: list[Mapping[str, Any]]) -> Any:
    kept_targets = [
        {
            k: t[k]
            for k in ("ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity")
            if k in t
        }
        for t in targets
    ]
    kept_policies = [{k: p[k] for k in _POLICY_KEYS if k in p} for p in policies]
    return {
        "ScalableTargets": sorted(
            kept_targets, key=lambda t: (t["ResourceId"], t["ScalableDimension"])
        ),
        "ScalingPolicies": sorted(
            kept_policies, key=lambda p: (p["ResourceId"], p["ScalableDimension"], p["PolicyName"])
        ),
    }


# --- the capture ---------------------------------------------------------------------------


def _reason(operation: str, error: BaseException) -> str:
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        code = detail.get("Code", "error")
        message = detail.get("Message") or ""
        if code == "UnknownOperationException" or "not implemented" in message.lower():
            return f"{operation}: this DynamoDB endpoint does not implement it ({code})"
        return f"{operation}: {code}" + (f": {message}" if message else "")
    if isinstance(error, NotImplementedError):
        return f"{operation}: this endpoint does not implement it"
    return f"{operation}: {type(error).__name__}: {error}"


def _attempt(operation: str, read: Callable[[], Any]) -> Part:
    try:
        return Part(value=read())
    # The capture never fails a compaction: whatever goes wrong is recorded as the reason
    # (no permission, an API this endpoint lacks, a network error, an unexpected response).
    except Exception as e:  # noqa: BLE001
        return Part(not_captured=_reason(operation, e))


def _error_code(error: BaseException) -> str | None:
    if isinstance(error, ClientError):
        code: str | None = error.response.get("Error", {}).get("Code")
        return code
    return None


def capture_settings(
    dynamodb: Any,
    table: str,
    *,
    autoscaling: Any | None = None,
    clock: Callable[[], float] = time.time,
    parts: tuple[str, ...] = PARTS,
) -> TableSettings:
    """Read the table's settings: one call per part (auto scaling: one, plus one per scaled
    resource for its policies). Never raises; a part that cannot be read says why."""
    captured_at_us = int(clock() * 1_000_000)
    out: dict[str, Part] = {}
    description: dict[str, Any] = {}

    def describe() -> dict[str, Any]:
        description.update(dynamodb.describe_table(TableName=table)["Table"])
        return normalize_table(description)

    out[TABLE] = _attempt("DescribeTable", describe)
    arn = description.get("TableArn")
    region = getattr(getattr(dynamodb, "meta", None), "region_name", None)
    if TIME_TO_LIVE in parts:
        out[TIME_TO_LIVE] = _attempt(
            "DescribeTimeToLive",
            lambda: normalize_ttl(dynamodb.describe_time_to_live(TableName=table)),
        )
    if CONTINUOUS_BACKUPS in parts:
        out[CONTINUOUS_BACKUPS] = _attempt(
            "DescribeContinuousBackups",
            lambda: normalize_backups(dynamodb.describe_continuous_backups(TableName=table)),
        )
    needs_arn = Part(not_captured="needs the table's ARN, and DescribeTable failed")
    if TAGS in parts:
        out[TAGS] = (
            _attempt("ListTagsOfResource", lambda: _tags(dynamodb, arn)) if arn else needs_arn
        )
    if RESOURCE_POLICY in parts:
        out[RESOURCE_POLICY] = (
            _attempt("GetResourcePolicy", lambda: _policy(dynamodb, arn)) if arn else needs_arn
        )
    if KINESIS in parts:
        out[KINESIS] = _attempt(
            "DescribeKinesisStreamingDestination", lambda: _kinesis(dynamodb, table)
        )
    if AUTO_SCALING in parts:
        if autoscaling is None:
            out[AUTO_SCALING] = Part(not_captured="no Application Auto Scaling client was given")
        elif not description:
            out[AUTO_SCALING] = Part(not_captured="needs the index names, and DescribeTable failed")
        else:
            indexes = [i["IndexName"] for i in description.get("GlobalSecondaryIndexes") or []]
            out[AUTO_SCALING] = _attempt(
                "DescribeScalableTargets/DescribeScalingPolicies",
                lambda: _scaling(autoscaling, table, indexes),
            )
    for name in PARTS:
        out.setdefault(name, Part(not_captured="not asked for"))
    return TableSettings(table, captured_at_us, out, region=region, table_arn=arn)


def _tags(dynamodb: Any, arn: str) -> list[dict[str, str]]:
    tags: list[dict[str, str]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ResourceArn": arn}
        if token:
            kwargs["NextToken"] = token
        page = dynamodb.list_tags_of_resource(**kwargs)
        tags += [{"Key": t["Key"], "Value": t["Value"]} for t in page.get("Tags", [])]
        token = page.get("NextToken")
        if not token:
            return sorted(tags, key=lambda t: t["Key"])


def _policy(dynamodb: Any, arn: str) -> Any:
    try:
        response = dynamodb.get_resource_policy(ResourceArn=arn)
    except ClientError as e:
        if _error_code(e) == "PolicyNotFoundException":
            return None  # captured: the table has no resource policy
        raise
    text = response.get("Policy")
    try:
        return {"Policy": json.loads(text) if text else None}
    except ValueError:
        return {"Policy": text}


def _kinesis(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    response = dynamodb.describe_kinesis_streaming_destination(TableName=table)
    keep = ("StreamArn", "DestinationStatus", "ApproximateCreationDateTimePrecision")
    return sorted(
        (
            {k: d[k] for k in keep if k in d}
            for d in response.get("KinesisDataStreamDestinations", [])
        ),
        key=lambda d: str(d.get("StreamArn")),
    )


def _scaling(autoscaling: Any, table: str, indexes: list[str]) -> Any:
    resources = [f"table/{table}", *(f"table/{table}/index/{name}" for name in indexes)]
    targets: list[Mapping[str, Any]] = []
    for start in range(0, len(resources), 50):  # the API takes at most 50 resource ids
        paginator = autoscaling.get_paginator("describe_scalable_targets")
        for page in paginator.paginate(
            ServiceNamespace="dynamodb", ResourceIds=resources[start : start + 50]
        ):
            targets += page.get("ScalableTargets", [])
    policies: list[Mapping[str, Any]] = []
    for resource in sorted({t["ResourceId"] for t in targets}):
        paginator = autoscaling.get_paginator("describe_scaling_policies")
        for page in paginator.paginate(ServiceNamespace="dynamodb", ResourceId=resource):
            # Only this resource's (moto also returns its indexes' for a table's id).
            policies += [p for p in page.get("ScalingPolicies", []) if p["ResourceId"] == resource]
    return normalize_scaling(targets, policies)


class BackgroundCapture:
    """The capture on a daemon thread, started early in a run; `result()` waits at most the
    budget left, so a slow or hanging endpoint cannot hold up (or fail) the compaction."""

    def __init__(
        self,
        capture: Callable[[], TableSettings],
        table: str,
        budget_seconds: float = DEFAULT_CAPTURE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._budget = budget_seconds
        self._clock = clock
        self._deadline = time.monotonic() + budget_seconds
        self._result: list[TableSettings] = []
        self._thread = threading.Thread(
            target=self._run, args=(capture,), name="settings-capture", daemon=True
        )
        self._thread.start()

    def _run(self, capture: Callable[[], TableSettings]) -> None:
        try:
            self._result.append(capture())
        except Exception as e:  # noqa: BLE001 - never fails the run; recorded instead
            self._result.append(
                not_captured(self._table, f"capture failed: {e}", int(self._clock() * 1e6))
            )

    def result(self) -> TableSettings:
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        if self._result:
            return self._result[0]
        return not_captured(
            self._table,
            f"the capture took longer than its {self._budget:g} s budget",
            int(self._clock() * 1_000_000),
        )


def with_parts(settings: TableSettings, **parts: Part) -> TableSettings:
    return replace(settings, parts={**settings.parts, **parts})
