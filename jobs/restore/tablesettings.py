"""Recreating a table from its recorded settings: the requests, and applying them.

`plan_recreate` turns the settings (as recorded, or edited with --settings-from) and the
user's overrides into one CreateTable (keys, attributes, billing and capacity, global and
local indexes, stream, encryption, table class, deletion protection, tags) and the requests
that must wait until the items are loaded: point-in-time recovery, auto scaling, and TTL
last (an item must not expire during the load unless the source would have expired it).
What is recorded but not recreated (resource policy, Kinesis destinations, replicas, warm
throughput, aws: tags) is listed with the reason. A setting that cannot be applied stops
the restore before any write unless --skip-unapplicable says to go on without it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import RefusedError, StorageError, UserInputError
from backup_lambda.layout import format_time_us
from compaction.manifest import KeyAttribute
from compaction.settingsdiff import diff_settings
from compaction.tablesettings import (
    AUTO_SCALING,
    CONTINUOUS_BACKUPS,
    KINESIS,
    RESOURCE_POLICY,
    TABLE,
    TAGS,
    TIME_TO_LIVE,
    TableSettings,
    capture_settings,
)
from jobs.restore.target import check_schema, describe_target

SKIP_FLAG = "--skip-unapplicable"
BILLING_MODES = ("PROVISIONED", "PAY_PER_REQUEST")


class UnapplicableSettingsError(RefusedError):
    """A recorded setting cannot be applied to the target (--skip-unapplicable goes on)."""


@dataclass(frozen=True)
class SettingsOverrides:
    """What the user changes about the recorded settings (the restore's flags)."""

    billing_mode: str | None = None  # PROVISIONED | PAY_PER_REQUEST
    no_indexes: bool = False
    no_ttl: bool = False
    no_stream: bool = False
    tags: tuple[tuple[str, str], ...] = ()  # added to (or replacing) the recorded tags
    kms_key: str | None = None
    settings_from: TableSettings | None = None  # instead of the recorded settings
    skip_unapplicable: bool = False
    # Not command-line flags: the drill's scratch tables leave these off.
    no_pitr: bool = False
    no_auto_scaling: bool = False
    no_deletion_protection: bool = False


@dataclass(frozen=True)
class Request:
    """One AWS request of a recreation, exactly as it is sent."""

    service: str  # dynamodb | application-autoscaling
    operation: str  # CreateTable, UpdateTimeToLive, ...
    params: Mapping[str, Any]
    setting: str  # what it recreates, for reports

    def text(self) -> str:
        return f"{self.operation} {json.dumps(self.params, indent=2, sort_keys=True)}"

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "operation": self.operation, "params": self.params}


@dataclass(frozen=True)
class RecreatePlan:
    create: Request
    after: tuple[Request, ...] = ()  # once the items are loaded, in this order
    not_recreated: tuple[str, ...] = ()  # recorded, deliberately not recreated: why
    unapplicable: tuple[str, ...] = ()  # cannot be applied here (left out of the requests)
    origin: str = ""  # where the settings come from

    def summary(self) -> str:
        return table_summary(self.create.params)

    def lines(self, target: str) -> list[str]:
        """What a dry run prints: the exact requests, in the order they would be sent."""
        out = [f"would create table {target!r} ({self.summary()})", self.origin]
        out.append(self.create.text())
        if self.after:
            out.append("after the items are loaded:")
            out += [r.text() for r in self.after]
        out += [f"not recreated: {line}" for line in self.not_recreated]
        out += [f"cannot be applied: {line}" for line in self.unapplicable]
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "requests": [self.create.as_json(), *(r.as_json() for r in self.after)],
            "not_recreated": list(self.not_recreated),
            "unapplicable": list(self.unapplicable),
        }


def table_summary(params: Mapping[str, Any]) -> str:
    """Billing and indexes of a CreateTable (or ImportTable's TableCreationParameters)."""
    if params.get("BillingMode") == "PAY_PER_REQUEST":
        parts = ["on-demand"]
    else:
        capacity = params.get("ProvisionedThroughput") or {}
        parts = [
            f"provisioned {capacity.get('ReadCapacityUnits')} RCU/"
            f"{capacity.get('WriteCapacityUnits')} WCU"
        ]
    for key, word in (("GlobalSecondaryIndexes", "global"), ("LocalSecondaryIndexes", "local")):
        if params.get(key):
            count = len(params[key])
            parts.append(f"{count} {word} {'index' if count == 1 else 'indexes'}")
    return ", ".join(parts)


def origin_of(settings: TableSettings | None, from_file: bool) -> str:
    if settings is None:
        return "the backup records no table settings: key schema only, on-demand billing"
    if from_file:
        return "settings from --settings-from"
    part = settings.part(TABLE)
    if not part.captured:
        # e.g. a snapshot imported from a DynamoDB export while the table was out of reach
        return (
            f"the backup records no table description (not captured: {part.not_captured}): "
            "key schema only, on-demand billing"
        )
    when = part.captured_at_us or settings.captured_at_us
    source = f" ({part.source})" if part.source else ""
    return f"settings captured at {format_time_us(when)}{source}"


def _schema_of(table: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    return {
        (k["AttributeName"], types.get(k["AttributeName"], "?"), k["KeyType"])
        for k in table["KeySchema"]
    }


def _arn_parts(arn: str) -> tuple[str, str] | None:
    """(region, account) of an ARN; None for a key id or alias without them."""
    pieces = arn.split(":")
    if len(pieces) >= 6 and pieces[0] == "arn":
        return pieces[3], pieces[4]
    return None


@dataclass
class _Builder:
    """Accumulates the CreateTable parameters and the notes of one plan."""

    target: str
    overrides: SettingsOverrides
    region: str | None
    account: str | None
    params: dict[str, Any] = field(default_factory=dict)
    not_recreated: list[str] = field(default_factory=list)
    unapplicable: list[str] = field(default_factory=list)

    def billing(self, table: Mapping[str, Any] | None) -> str:
        recorded = table.get("BillingMode", "PROVISIONED") if table else "PAY_PER_REQUEST"
        mode = self.overrides.billing_mode or recorded
        if mode == "PROVISIONED":
            capacity = (table or {}).get("ProvisionedThroughput")
            if not capacity:
                raise UserInputError(
                    "--billing-mode PROVISIONED: the recorded settings hold no provisioned "
                    "capacity; write it into a settings file and pass --settings-from FILE"
                )
            self.params["BillingMode"] = "PROVISIONED"
            self.params["ProvisionedThroughput"] = dict(capacity)
        else:
            self.params["BillingMode"] = "PAY_PER_REQUEST"
            if table and table.get("OnDemandThroughput") and recorded == "PAY_PER_REQUEST":
                self.params["OnDemandThroughput"] = dict(table["OnDemandThroughput"])
        return mode

    def indexes(self, table: Mapping[str, Any], mode: str) -> None:
        if self.overrides.no_indexes:
            return
        gsis = []
        for raw in table.get("GlobalSecondaryIndexes") or []:
            index: dict[str, Any] = {
                "IndexName": raw["IndexName"],
                "KeySchema": [dict(k) for k in raw["KeySchema"]],
                "Projection": dict(raw["Projection"]),
            }
            if mode == "PROVISIONED":
                capacity = raw.get("ProvisionedThroughput")
                if not capacity:
                    raise UserInputError(
                        f"--billing-mode PROVISIONED: index {raw['IndexName']!r} has no "
                        "recorded capacity; give it with --settings-from FILE"
                    )
                index["ProvisionedThroughput"] = dict(capacity)
            elif raw.get("OnDemandThroughput") and table.get("BillingMode") == "PAY_PER_REQUEST":
                index["OnDemandThroughput"] = dict(raw["OnDemandThroughput"])
            gsis.append(index)
        if gsis:
            self.params["GlobalSecondaryIndexes"] = gsis
        lsis = [
            {
                "IndexName": raw["IndexName"],
                "KeySchema": [dict(k) for k in raw["KeySchema"]],
                "Projection": dict(raw["Projection"]),
            }
            for raw in table.get("LocalSecondaryIndexes") or []
        ]
        if lsis:
            self.params["LocalSecondaryIndexes"] = lsis

    def attributes(self, table: Mapping[str, Any]) -> None:
        """Only the attributes a key of the table or of a created index uses (CreateTable
        rejects unused definitions)."""
        used = {k["AttributeName"] for k in self.params["KeySchema"]}
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            for index in self.params.get(key, []):
                used |= {k["AttributeName"] for k in index["KeySchema"]}
        self.params["AttributeDefinitions"] = [
            dict(a) for a in table["AttributeDefinitions"] if a["AttributeName"] in used
        ]

    def stream(self, table: Mapping[str, Any]) -> None:
        spec = table.get("StreamSpecification") or {}
        if spec.get("StreamEnabled") and not self.overrides.no_stream:
            self.params["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": spec.get("StreamViewType") or "NEW_AND_OLD_IMAGES",
            }

    def encryption(self, table: Mapping[str, Any] | None) -> None:
        key = self.overrides.kms_key
        if key is None and table:
            sse = table.get("SSE") or {}
            if sse.get("SSEType") == "KMS":
                key = sse.get("KMSMasterKeyArn")
                if key is None:
                    self.params["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"}
                    return
        if key is None:
            return
        where = _arn_parts(key)
        if where and self.region and where[0] != self.region:
            self.unapplicable.append(
                f"encryption with KMS key {key}: the key is in {where[0]}, the target table "
                f"in {self.region} (--kms-key names another key)"
            )
            return
        if where and self.account and where[1] != self.account:
            self.unapplicable.append(
                f"encryption with KMS key {key}: the key belongs to account {where[1]}, the "
                f"target to {self.account} (--kms-key names another key)"
            )
            return
        self.params["SSESpecification"] = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}

    def tags(self, recorded: list[Mapping[str, str]] | None) -> None:
        tags = {t["Key"]: t["Value"] for t in recorded or []}
        reserved = sorted(k for k in tags if k.startswith("aws:"))
        if reserved:
            self.not_recreated.append(
                f"tags {', '.join(reserved)}: the aws: prefix is reserved for AWS"
            )
        tags = {k: v for k, v in tags.items() if not k.startswith("aws:")}
        tags.update(dict(self.overrides.tags))
        if tags:
            self.params["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]

    def leftovers(self, settings: TableSettings, table: Mapping[str, Any]) -> None:
        """Recorded, but not recreated by design."""
        if _prewarmed(table):
            self.not_recreated.append(
                f"warm throughput {json.dumps(table['WarmThroughput'], sort_keys=True)}: "
                "pre-warming is billed; set it with UpdateTable if the new table needs it"
            )
        if table.get("ReplicaRegions"):
            self.not_recreated.append(
                f"global table replicas in {', '.join(table['ReplicaRegions'])}: add them "
                "with UpdateTable once the restore is checked"
            )
        if settings.value(RESOURCE_POLICY):
            self.not_recreated.append(
                "resource policy: it names the source table and its principals; review it "
                "and apply it with PutResourcePolicy (`ddb-backup settings` prints it)"
            )
        if settings.value(KINESIS):
            arns = ", ".join(str(d.get("StreamArn")) for d in settings.value(KINESIS))
            self.not_recreated.append(
                f"Kinesis streaming destinations ({arns}): the load would be streamed into "
                "the source's consumers; enable them yourself if the new table replaces it"
            )


# What DynamoDB reports as warm throughput without any pre-warming (on-demand tables).
_ON_DEMAND_WARM = {"ReadUnitsPerSecond": 12_000, "WriteUnitsPerSecond": 4_000}


def _prewarmed(table: Mapping[str, Any]) -> bool:
    """Whether the recorded warm throughput is above what a new table gets anyway."""
    warm = table.get("WarmThroughput") or {}
    if table.get("BillingMode") == "PAY_PER_REQUEST":
        floor = _ON_DEMAND_WARM
    else:
        capacity = table.get("ProvisionedThroughput") or {}
        floor = {
            "ReadUnitsPerSecond": capacity.get("ReadCapacityUnits", 0),
            "WriteUnitsPerSecond": capacity.get("WriteCapacityUnits", 0),
        }
    return any(warm.get(k, 0) > v for k, v in floor.items())


def plan_recreate(
    settings: TableSettings | None,
    schema: tuple[KeyAttribute, ...],
    target: str,
    overrides: SettingsOverrides | None = None,
    *,
    region: str | None = None,
    account: str | None = None,
) -> RecreatePlan:
    """The requests that recreate the table as `target`. Without recorded settings (a backup
    made before they were captured) the table is created as before: key schema, on-demand."""
    overrides = overrides or SettingsOverrides()
    from_file = overrides.settings_from is not None
    settings = overrides.settings_from or settings
    table = settings.value(TABLE) if settings is not None else None
    build = _Builder(target, overrides, region, account)
    build.params["TableName"] = target
    if table is None:
        if not schema or any(k.key_type is None for k in schema):
            raise UserInputError(
                "cannot create the target: the backup records key names but not which is the "
                "partition key; create the table yourself, or compact while the source table "
                "can be described"
            )
        build.params["KeySchema"] = [
            {"AttributeName": k.name, "KeyType": k.key_type} for k in schema
        ]
        build.params["AttributeDefinitions"] = [
            {"AttributeName": k.name, "AttributeType": k.attribute_type} for k in schema
        ]
        build.billing(None)
    else:
        expected = {(k.name, k.attribute_type, k.key_type) for k in schema}
        if schema and all(k.key_type for k in schema) and _schema_of(table) != expected:
            raise UserInputError(
                f"the settings' key schema {sorted(_schema_of(table))} is not the backup's "
                f"{sorted(expected)}; the items could not be written into such a table"
            )
        build.params["KeySchema"] = [dict(k) for k in table["KeySchema"]]
        mode = build.billing(table)
        build.indexes(table, mode)
        build.attributes(table)
        build.stream(table)
        if table.get("TableClass"):
            build.params["TableClass"] = table["TableClass"]
        if table.get("DeletionProtectionEnabled") and not overrides.no_deletion_protection:
            build.params["DeletionProtectionEnabled"] = True
    build.encryption(table)
    build.tags(settings.value(TAGS) if settings is not None else None)
    after: list[Request] = []
    if settings is not None and table is not None:
        build.leftovers(settings, table)
        after = _after_load(settings, target, build)
    return RecreatePlan(
        create=Request("dynamodb", "CreateTable", build.params, "table"),
        after=tuple(after),
        not_recreated=tuple(build.not_recreated),
        unapplicable=tuple(build.unapplicable),
        origin=origin_of(settings, from_file),
    )


def _after_load(settings: TableSettings, target: str, build: _Builder) -> list[Request]:
    overrides = build.overrides
    after: list[Request] = []
    backups = settings.value(CONTINUOUS_BACKUPS) or {}
    if (
        backups.get("PointInTimeRecoveryStatus") in {"ENABLED", "ENABLING"}
        and not overrides.no_pitr
    ):
        spec: dict[str, Any] = {"PointInTimeRecoveryEnabled": True}
        if backups.get("RecoveryPeriodInDays") not in (None, 35):  # 35: the default
            spec["RecoveryPeriodInDays"] = backups["RecoveryPeriodInDays"]
        after.append(
            Request(
                "dynamodb",
                "UpdateContinuousBackups",
                {"TableName": target, "PointInTimeRecoverySpecification": spec},
                "point-in-time recovery",
            )
        )
    after += _scaling_requests(settings, target, build)
    ttl = settings.value(TIME_TO_LIVE) or {}
    if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"} and ttl.get("AttributeName"):
        if overrides.no_ttl:
            pass
        else:
            after.append(
                Request(
                    "dynamodb",
                    "UpdateTimeToLive",
                    {
                        "TableName": target,
                        "TimeToLiveSpecification": {
                            "Enabled": True,
                            "AttributeName": ttl["AttributeName"],
                        },
                    },
                    "time to live",
                )
            )
    return after


def _scaling_requests(settings: TableSettings, target: str, build: _Builder) -> list[Request]:
    scaling = settings.value(AUTO_SCALING) or {}
    targets = scaling.get("ScalableTargets") or []
    if not targets or build.overrides.no_auto_scaling:
        return []
    if build.params.get("BillingMode") != "PROVISIONED":
        build.not_recreated.append("auto scaling: the new table is on-demand")
        return []
    source = f"table/{settings.table}"
    created = {i["IndexName"] for i in build.params.get("GlobalSecondaryIndexes", [])}

    def resource(resource_id: str) -> str | None:
        if resource_id == source:
            return f"table/{target}"
        prefix = f"{source}/index/"
        if resource_id.startswith(prefix) and resource_id[len(prefix) :] in created:
            return f"table/{target}/index/{resource_id[len(prefix) :]}"
        return None

    out: list[Request] = []
    for raw in targets:
        rid = resource(raw["ResourceId"])
        if rid is None:
            continue
        params = {
            "ServiceNamespace": "dynamodb",
            "ResourceId": rid,
            "ScalableDimension": raw["ScalableDimension"],
            "MinCapacity": raw["MinCapacity"],
            "MaxCapacity": raw["MaxCapacity"],
        }
        out.append(
            Request("application-autoscaling", "RegisterScalableTarget", params, "auto scaling")
        )
    for raw in scaling.get("ScalingPolicies") or []:
        rid = resource(raw["ResourceId"])
        if rid is None:
            continue
        policy = {k: v for k, v in raw.items() if k != "ResourceId"}
        params = {"ServiceNamespace": "dynamodb", "ResourceId": rid, **policy}
        out.append(Request("application-autoscaling", "PutScalingPolicy", params, "auto scaling"))
    return out


# ImportTable takes these of CreateTable's parameters (TableCreationParameters).
_IMPORT_TABLE_KEYS = (
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "SSESpecification",
    "GlobalSecondaryIndexes",
)


def import_table_parameters(plan: RecreatePlan) -> tuple[dict[str, Any], list[Request], list[str]]:
    """For `restore --via import-table`: ImportTable's TableCreationParameters from the same
    plan, the requests that give the imported table the rest once the import is done
    (UpdateTable for the stream, table class and deletion protection, one each; TagResource
    with the placeholder ARN `<the ARN of TARGET>`, filled in when it is sent), and what
    ImportTable cannot make at all (local indexes exist only from CreateTable). The plan's
    after-load requests (PITR, auto scaling, TTL last) follow the changes after the
    snapshot, as they follow the load of a created table."""
    create = dict(plan.create.params)
    params = {k: create[k] for k in _IMPORT_TABLE_KEYS if k in create}
    used = {k["AttributeName"] for k in params["KeySchema"]} | {
        k["AttributeName"] for i in params.get("GlobalSecondaryIndexes", []) for k in i["KeySchema"]
    }
    params["AttributeDefinitions"] = [
        a for a in params["AttributeDefinitions"] if a["AttributeName"] in used
    ]
    target = create["TableName"]
    before: list[Request] = []
    # One setting per UpdateTable: DynamoDB takes one such change at a time (the table is
    # UPDATING until it is done), so each is sent once the table is ACTIVE again.
    for key, setting in (
        ("StreamSpecification", "stream"),
        ("TableClass", "table class"),
        ("DeletionProtectionEnabled", "deletion protection"),
    ):
        if key in create:
            before.append(
                Request("dynamodb", "UpdateTable", {"TableName": target, key: create[key]}, setting)
            )
    if create.get("Tags"):
        before.append(
            Request(
                "dynamodb",
                "TagResource",
                {"ResourceArn": f"<the ARN of {target}>", "Tags": create["Tags"]},
                "tags",
            )
        )
    lost = [
        f"local index {i['IndexName']}: ImportTable creates no local indexes (restore without "
        "--via import-table to keep them)"
        for i in create.get("LocalSecondaryIndexes", [])
    ]
    return params, before, lost


# --- applying a plan -----------------------------------------------------------------------

# Which CreateTable parameter an error message blames, and what it is called.
_BLAME = (
    (("kms", "sse", "encrypt"), "SSESpecification", "encryption"),
    (("stream",), "StreamSpecification", "stream"),
    (("tableclass", "table class"), "TableClass", "table class"),
    (("ondemandthroughput", "on-demand throughput"), "OnDemandThroughput", "on-demand limits"),
    (("tag",), "Tags", "tags"),
    (
        ("deletionprotection", "deletion protection"),
        "DeletionProtectionEnabled",
        "deletion protection",
    ),
)
_UNAPPLICABLE_CODES = {"ValidationException", "AccessDeniedException", "LimitExceededException"}


def _call(client: Any, request: Request, params: Mapping[str, Any] | None = None) -> Any:
    method = getattr(client, _snake(request.operation))
    return method(**(params if params is not None else request.params))


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _message(error: BaseException) -> str:
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code')}: {detail.get('Message')}"
    return f"{type(error).__name__}: {error}"


def create_from_plan(
    dynamodb: Any,
    plan: RecreatePlan,
    skip_unapplicable: bool,
    wait: Callable[[Any, str], None] | None = None,
) -> list[str]:
    """Send the CreateTable (without what DynamoDB refuses, when allowed), wait until the
    table and its indexes are ACTIVE, and check what was created. Returns what could not be
    applied; raises before any item is written when something cannot and skipping is off."""
    params = dict(plan.create.params)
    target = params["TableName"]
    unapplied: list[str] = []
    existed = False
    while True:
        try:
            dynamodb.create_table(**params)
            break
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code == "ResourceInUseException":
                # An earlier attempt whose answer was lost created it (botocore sent the
                # request again), or another client did: the key check below decides.
                existed = True
                break
            blamed = blamed_setting(str(e.response.get("Error", {}).get("Message", "")), params)
            if code not in _UNAPPLICABLE_CODES or blamed is None:
                raise StorageError(f"CreateTable on table {target!r} failed: {e}") from e
            key, name = blamed
            note = f"{name}: {_message(e)}"
            if not skip_unapplicable:
                raise UnapplicableSettingsError(
                    f"cannot create {target!r} with the recorded {note}; nothing was written "
                    f"(rerun with {SKIP_FLAG} to create it without, or change it with "
                    "--settings-from FILE)"
                ) from e
            params.pop(key)
            unapplied.append(note)
        except BotoCoreError as e:
            raise StorageError(f"CreateTable on table {target!r} failed: {e}") from e
    (wait or wait_active)(dynamodb, target)
    if existed:
        types = {a["AttributeName"]: a["AttributeType"] for a in params["AttributeDefinitions"]}
        expected = tuple(
            KeyAttribute(k["AttributeName"], types[k["AttributeName"]], k["KeyType"])
            for k in params["KeySchema"]
        )
        check_schema(target, describe_target(dynamodb, target) or (), expected)
    missing = check_created(dynamodb, params)
    if missing and not skip_unapplicable:
        raise UnapplicableSettingsError(
            f"table {target!r} was created, but DynamoDB did not apply: {'; '.join(missing)}; "
            f"no item was written (delete the table, or rerun with {SKIP_FLAG} to load it as "
            "it is)"
        )
    return unapplied + missing


def blamed_setting(message: str, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """(parameter, what it is called) that a refusal's message names, among `params`."""
    text = message.lower()
    for words, key, name in _BLAME:
        if key in params and any(w in text for w in words):
            return key, name
    return None


def wait_active(dynamodb: Any, table: str, timeout_s: float = 600.0) -> None:
    """Until the table and every index it was created with are ACTIVE."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            description = dynamodb.describe_table(TableName=table)["Table"]
        except (ClientError, BotoCoreError) as e:
            code = e.response.get("Error", {}).get("Code") if isinstance(e, ClientError) else None
            if code != "ResourceNotFoundException":
                raise StorageError(f"DescribeTable on table {table!r} failed: {e}") from e
            description = {}
        statuses = [description.get("TableStatus")] + [
            i.get("IndexStatus", "ACTIVE") for i in description.get("GlobalSecondaryIndexes") or []
        ]
        if statuses and all(s == "ACTIVE" for s in statuses):
            return
        if time.monotonic() > deadline:
            raise StorageError(f"table {table!r} is not ACTIVE after {timeout_s:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def check_created(dynamodb: Any, params: Mapping[str, Any]) -> list[str]:
    """What the created table lacks of what was asked for. Tags that CreateTable did not
    apply (some DynamoDB implementations ignore them there) are added with TagResource."""
    target = params["TableName"]
    live = capture_settings(dynamodb, target, parts=(TABLE, TAGS))
    table = live.value(TABLE)
    if table is None:
        return [f"the new table could not be described ({live.part(TABLE).not_captured})"]
    missing: list[str] = []
    for key, word in (("GlobalSecondaryIndexes", "global"), ("LocalSecondaryIndexes", "local")):
        wanted = {i["IndexName"] for i in params.get(key, [])}
        have = {i["IndexName"] for i in table.get(key) or []}
        if wanted - have:
            missing.append(f"{word} indexes {', '.join(sorted(wanted - have))}")
    if params.get("BillingMode", "PROVISIONED") != table.get("BillingMode"):
        missing.append(f"billing mode {params.get('BillingMode')}")
    if "StreamSpecification" in params and not table["StreamSpecification"]["StreamEnabled"]:
        missing.append("stream")
    if "SSESpecification" in params and table.get("SSE", {}).get("SSEType") != "KMS":
        missing.append("encryption with a KMS key")
    if params.get("DeletionProtectionEnabled") and not table.get("DeletionProtectionEnabled"):
        missing.append("deletion protection")
    if params.get("TableClass", "STANDARD") != table.get("TableClass", "STANDARD"):
        missing.append(f"table class {params.get('TableClass')}")
    if not live.captured(TAGS):
        return missing  # tags cannot be read back here (no permission): trust CreateTable
    wanted_tags = {t["Key"]: t["Value"] for t in params.get("Tags", [])}
    have_tags = {t["Key"]: t["Value"] for t in live.value(TAGS) or []}
    lacking = [{"Key": k, "Value": v} for k, v in wanted_tags.items() if have_tags.get(k) != v]
    if lacking and live.table_arn is None:
        missing.append("tags")
    elif lacking:
        try:
            dynamodb.tag_resource(ResourceArn=live.table_arn, Tags=lacking)
        except (ClientError, BotoCoreError) as e:
            missing.append(f"tags ({_message(e)})")
    return missing


def apply_after(
    clients: Mapping[str, Any | None], plan: RecreatePlan, skip_unapplicable: bool
) -> tuple[list[Request], list[str]]:
    """The requests that follow the load; (applied, could not be applied). Raises when one
    fails and skipping is off (the items are loaded by then: the message says so)."""
    applied: list[Request] = []
    failed: list[str] = []
    for request in plan.after:
        client = clients.get(request.service)
        if client is None:
            failed.append(f"{request.setting}: no {request.service} client")
            continue
        try:
            _call(client, request)
            applied.append(request)
        # moto raises NotImplementedError for what it lacks; others are the service's answer.
        except (ClientError, BotoCoreError, NotImplementedError) as e:
            failed.append(f"{request.setting} ({request.operation}): {_message(e)}")
    if failed and not skip_unapplicable:
        target = plan.create.params["TableName"]
        raise UnapplicableSettingsError(
            f"the items were restored into {target!r}, but these settings could not be "
            f"applied: {'; '.join(failed)} (apply them yourself; {SKIP_FLAG} accepts this)"
        )
    return applied, failed


def compare_existing(dynamodb: Any, target: str, backup: TableSettings) -> list[str]:
    """How an existing target's settings differ from the backup's (backup -> target)."""
    parts = (TABLE, TIME_TO_LIVE, TAGS)
    live = capture_settings(dynamodb, target, parts=parts)
    return diff_settings(backup, live, parts=parts, names=("backup's", "target's"))
