"""deploy/template.yaml passes cfn-lint and keeps the properties the backup relies on.

Each structural check is a function that returns what is wrong; the template must give no
findings, and a mutated copy of the template must give the finding (so no check is vacuous).
"""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from cfnlint.decode import decode

from jobs.ops.schedule_table import emit
from tests.support import records_of

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
# The same entry point as the `cfn-lint` console script, run by this interpreter.
CFN_LINT = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]

Template = dict[str, Any]
Check = Callable[[Template], list[str]]


def load_template(path: Path = TEMPLATE) -> Template:
    decoded, matches = decode(str(path))
    assert decoded is not None, [str(m) for m in matches]
    # Plain dicts and lists (cfn-lint's node classes are dict/list subclasses).
    return json.loads(json.dumps(decoded))


def run_cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [*CFN_LINT, "--regions", "us-east-1", "eu-west-1", "--", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


# ---------------------------------------------------------------- template navigation


def resources_of(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r.get("Type") == kind}


def props(template: Template, name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][name]["Properties"]
    return properties


def branches(value: Any) -> Iterator[Any]:
    """Every value a property can take: both sides of Fn::If, never AWS::NoValue."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        for side in value["Fn::If"][1:]:
            yield from branches(side)
    elif value != {"Ref": "AWS::NoValue"}:
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policy_document: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for entry in as_list(policy_document.get("Statement", [])):
        found.extend(s for s in branches(entry) if isinstance(s, dict))
    return found


def role_statements(template: Template, role: str) -> list[dict[str, Any]]:
    found = []
    for policy in props(template, role).get("Policies", []):
        found += statements(policy["PolicyDocument"])
    return found


def function_role(template: Template, function: str) -> str:
    role = props(template, function)["Role"]
    assert isinstance(role, dict), f"{function}: Role must point at a role of this stack"
    return str(role["Fn::GetAtt"][0])


def resource_text(resource: Any) -> str:
    return json.dumps(resource, sort_keys=True)


def the_mapping(template: Template) -> dict[str, Any]:
    mappings = resources_of(template, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1, f"expected one event source mapping, found {sorted(mappings)}"
    properties: dict[str, Any] = next(iter(mappings.values()))["Properties"]
    return properties


def the_bucket(template: Template) -> dict[str, Any]:
    return props(template, "BackupBucket")


# ---------------------------------------------------------------- checks


def check_partial_batch_responses(template: Template) -> list[str]:
    mapping = the_mapping(template)
    problems = []
    if "ReportBatchItemFailures" not in mapping.get("FunctionResponseTypes", []):
        problems.append("the mapping must run with FunctionResponseTypes ReportBatchItemFailures")
    if mapping.get("BisectBatchOnFunctionError") is not True:
        problems.append("BisectBatchOnFunctionError must be true")
    if mapping.get("FunctionName") != {"Ref": "BackupFunction"}:
        problems.append("the mapping must invoke BackupFunction")
    if mapping.get("StartingPosition") != "TRIM_HORIZON":
        problems.append("StartingPosition must be TRIM_HORIZON (no change may be skipped)")
    return problems


def check_bounded_retries(template: Template) -> list[str]:
    mapping = the_mapping(template)
    retries = mapping.get("MaximumRetryAttempts")
    age = mapping.get("MaximumRecordAgeInSeconds")
    problems = []
    if not isinstance(retries, int) or not 0 <= retries <= 100:
        problems.append(f"MaximumRetryAttempts must be bounded, got {retries!r}")
    if not isinstance(age, int) or not 60 <= age <= 86400:
        problems.append(f"MaximumRecordAgeInSeconds must be within the stream's 24 h, got {age!r}")
    return problems


def check_on_failure_queue(template: Template) -> list[str]:
    destination = the_mapping(template).get("DestinationConfig", {}).get("OnFailure", {})
    target = destination.get("Destination")
    queues = resources_of(template, "AWS::SQS::Queue")
    if not (
        isinstance(target, dict)
        and target.get("Fn::GetAtt", [None])[0] in queues
        and target["Fn::GetAtt"][1] == "Arn"
    ):
        return [f"OnFailure must be the ARN of an SQS queue of this stack, got {target!r}"]
    queue = queues[target["Fn::GetAtt"][0]]["Properties"]
    problems = []
    if not (queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue):
        problems.append("the failure queue must be encrypted")
    if queue.get("MessageRetentionPeriod") != 1209600:
        problems.append("the failure queue must keep messages 14 days")
    return problems


def check_versioning(template: Template) -> list[str]:
    status = the_bucket(template).get("VersioningConfiguration", {}).get("Status")
    return [] if status == "Enabled" else [f"bucket versioning must be Enabled, got {status!r}"]


def check_public_access_block(template: Template) -> list[str]:
    block = the_bucket(template).get("PublicAccessBlockConfiguration", {})
    names = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    return [
        f"PublicAccessBlockConfiguration.{n} must be true"
        for n in names
        if block.get(n) is not True
    ]


def check_tls_only(template: Template) -> list[str]:
    policies = [
        p["Properties"]
        for p in resources_of(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"].get("Bucket") == {"Ref": "BackupBucket"}
    ]
    for policy in policies:
        for statement in statements(policy["PolicyDocument"]):
            condition = statement.get("Condition", {}).get("Bool", {})
            resources = resource_text(statement.get("Resource"))
            if (
                statement.get("Effect") == "Deny"
                and statement.get("Principal") == "*"
                and statement.get("Action") in ("s3:*", ["s3:*"])
                and str(condition.get("aws:SecureTransport")).lower() == "false"
                and "BackupBucket.Arn}/*" in resources
                and '"BackupBucket", "Arn"' in resources
            ):
                return []
    return ["the bucket policy must deny every s3 action without TLS (aws:SecureTransport false)"]


def check_encryption(template: Template) -> list[str]:
    rules = (
        the_bucket(template)
        .get("BucketEncryption", {})
        .get("ServerSideEncryptionConfiguration", [])
    )
    algorithms = {
        d.get("SSEAlgorithm")
        for rule in rules
        for d in branches(rule.get("ServerSideEncryptionByDefault"))
    }
    return [] if algorithms == {"aws:kms", "AES256"} else [f"SSE-KMS or SSE-S3, got {algorithms}"]


def check_lifecycle(template: Template) -> list[str]:
    rules = [
        r
        for entry in the_bucket(template).get("LifecycleConfiguration", {}).get("Rules", [])
        for r in branches(entry)
    ]
    problems = []
    if not any(
        r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
        == {"Ref": "NoncurrentVersionRetentionDays"}
        for r in rules
    ):
        problems.append("noncurrent versions must expire after NoncurrentVersionRetentionDays")
    if not any("AbortIncompleteMultipartUpload" in r for r in rules):
        problems.append("incomplete multipart uploads must be aborted")
    return problems


def check_backup_function(template: Template) -> list[str]:
    function = props(template, "BackupFunction")
    env = function.get("Environment", {}).get("Variables", {})
    problems = []
    if function.get("Handler") != "backup_lambda.handler.handler":
        problems.append(
            f"handler must be backup_lambda.handler.handler, got {function.get('Handler')}"
        )
    if function.get("CodeUri") != "../dist/backup-lambda.zip":
        problems.append("the backup function deploys dist/backup-lambda.zip (make lambda-zip)")
    if env.get("BACKUP_BUCKET") != {"Ref": "BackupBucket"}:
        problems.append("BACKUP_BUCKET must name the backup bucket")
    if env.get("BACKUP_PREFIX") != {"Ref": "BackupPrefix"}:
        problems.append("BACKUP_PREFIX must come from the BackupPrefix parameter")
    return problems


def check_backup_function_s3_writes_only(template: Template) -> list[str]:
    problems = []
    for statement in role_statements(template, function_role(template, "BackupFunction")):
        actions = [str(a) for a in as_list(statement.get("Action", []))]
        for action in actions:
            lowered = action.lower()
            if lowered in {"*", "s3:*"} or lowered.startswith("s3:delete"):
                problems.append(f"the backup function must not have {action}")
        if {a.lower() for a in actions} == {"s3:getbucketversioning"}:
            # its one read: the bucket's versioning, once per cold start, on the bucket only
            if statement.get("Resource") != {"Fn::GetAtt": ["BackupBucket", "Arn"]}:
                problems.append("the backup function may check versioning of its bucket only")
            continue
        if any(a.lower().startswith("s3:") for a in actions):
            if statement.get("Effect") == "Allow" and {a.lower() for a in actions} != {
                "s3:putobject"
            }:
                problems.append(f"the backup function may only s3:PutObject, got {actions}")
            for resource in as_list(statement.get("Resource")):
                if not any(f"/v1/{folder}/*" in resource_text(resource) for folder in WRITABLE):
                    problems.append(
                        "the backup function may only write under <prefix>/<table>/v1/ "
                        f"{', '.join(WRITABLE)}, got {resource_text(resource)}"
                    )
    return problems


# What the backup function writes: item versions, the change journal and its two markers.
WRITABLE = ("items", "journal", "journal-coverage", "journal-only")


def check_journal_settings(template: Template) -> list[str]:
    env = props(template, "BackupFunction").get("Environment", {}).get("Variables", {})
    problems = []
    if env.get("BACKUP_JOURNAL_ONLY") != {"Ref": "JournalOnly"}:
        problems.append("BACKUP_JOURNAL_ONLY must come from the JournalOnly parameter")
    if template["Parameters"].get("JournalOnly", {}).get("Default") != "false":
        problems.append("per-item objects (JournalOnly false) must stay the default")
    rules = [
        r
        for entry in the_bucket(template).get("LifecycleConfiguration", {}).get("Rules", [])
        for r in branches(entry)
        if "/v1/journal/" in resource_text(r.get("Prefix"))
    ]
    if [r.get("ExpirationInDays") for r in rules] != [{"Ref": "JournalRetentionDays"}]:
        problems.append("one lifecycle rule expires the journal after JournalRetentionDays")
    if template["Parameters"].get("JournalRetentionDays", {}).get("Default") != 0:
        problems.append("the journal must not expire by default (expire removes it safely)")
    compaction = props(template, "CompactionFunction").get("Environment", {}).get("Variables", {})
    if compaction.get("VERIFY_JOURNAL_EVERY") != {"Ref": "VerifyJournalEvery"}:
        problems.append("VERIFY_JOURNAL_EVERY must come from the VerifyJournalEvery parameter")
    return problems


def check_scratch_tables_only(template: Template) -> list[str]:
    writes = {"dynamodb:createtable", "dynamodb:deletetable", "dynamodb:batchwriteitem"}
    problems = []
    for role in resources_of(template, "AWS::IAM::Role"):
        for statement in role_statements(template, role):
            actions = {str(a).lower() for a in as_list(statement.get("Action", []))}
            if actions & writes and "${SourceTableName}-drill-*" not in resource_text(
                statement.get("Resource")
            ):
                problems.append(f"{role}: table writes only on <table>-drill-* scratch tables")
            if "dynamodb:*" in actions or "*" in actions:
                problems.append(f"{role}: no wildcard actions")
    return problems


def check_iterator_age_alarm(template: Template) -> list[str]:
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        text = resource_text(alarm["Properties"])
        if (
            '"MetricName": "IteratorAge"' in text
            and '"Ref": "BackupFunction"' in text
            and '"Ref": "IteratorAgeAlarmSeconds"' in text
        ):
            return []
    return ["an alarm on the backup function's IteratorAge (threshold from the parameter)"]


SCHEDULED = {
    "CompactionFunction": ("jobs.ops.scheduled.compaction_handler", "CompactionSchedule"),
    "DrillFunction": ("jobs.ops.scheduled.drill_handler", "DrillSchedule"),
    "ExpireFunction": ("jobs.ops.scheduled_expire.expire_handler", "ExpireSchedule"),
}


def check_scheduled_tools(template: Template) -> list[str]:
    expected = SCHEDULED
    problems = []
    for name, (command, schedule) in expected.items():
        function = props(template, name)
        if function.get("ImageConfig", {}).get("Command") != [command]:
            problems.append(f"{name} must run {command}")
        events = [e.get("Properties", {}) for e in function.get("Events", {}).values()]
        if {"Ref": schedule} not in [e.get("Schedule") for e in events]:
            problems.append(f"{name} must run on the {schedule} schedule")
        env = function.get("Environment", {}).get("Variables", {})
        if env.get("BACKUP_TABLES") != {"Ref": "SourceTableName"}:
            problems.append(f"{name}: BACKUP_TABLES must be the source table")
    return problems


SETTINGS_READS = {
    "dynamodb:describetable",
    "dynamodb:describetimetolive",
    "dynamodb:describecontinuousbackups",
    "dynamodb:listtagsofresource",
    "dynamodb:getresourcepolicy",
    "dynamodb:describekinesisstreamingdestination",
}


def check_settings_capture(template: Template) -> list[str]:
    """The compaction may read the source table's settings, and nothing but read them."""
    granted: set[str] = set()
    for statement in role_statements(template, function_role(template, "CompactionFunction")):
        actions = {str(a).lower() for a in as_list(statement.get("Action", []))}
        if actions & SETTINGS_READS:
            if "table/${SourceTableName}" not in resource_text(statement.get("Resource")):
                return ["the compaction reads settings of the source table only"]
            granted |= actions
    missing = SETTINGS_READS - granted
    return [f"the compaction may not read {sorted(missing)}"] if missing else []


def check_scheduled_state(template: Template) -> list[str]:
    """The scheduled compaction may write its state object (docs/FORMAT.md), and its
    periodic full snapshot is a parameter."""
    env = props(template, "CompactionFunction").get("Environment", {}).get("Variables", {})
    if env.get("FULL_EVERY") != {"Ref": "FullEvery"}:
        return ["FULL_EVERY must come from the FullEvery parameter"]
    for statement in role_statements(template, function_role(template, "CompactionFunction")):
        actions = {str(a).lower() for a in as_list(statement.get("Action", []))}
        resource = resource_text(statement.get("Resource"))
        if "s3:putobject" in actions and "/v1/scheduled/*" in resource:
            return []
    return ["the compaction must be allowed to write <prefix>/<table>/v1/scheduled/*"]


def check_scheduled_expire(template: Template) -> list[str]:
    env = props(template, "ExpireFunction").get("Environment", {}).get("Variables", {})
    problems = []
    if env.get("KEEP_LAST") != {"Ref": "KeepLastSnapshots"}:
        problems.append("KEEP_LAST must come from the KeepLastSnapshots parameter")
    if env.get("KEEP_DAYS") != {"Ref": "KeepSnapshotDays"}:
        problems.append("KEEP_DAYS must come from the KeepSnapshotDays parameter")
    return problems


def check_deletes_only_snapshots(template: Template) -> list[str]:
    """Only the expire role deletes, and only under <prefix>/<table>/v1/snapshots/ and
    v1/journal/ (journal objects every needed snapshot holds)."""
    problems = []
    for role in resources_of(template, "AWS::IAM::Role"):
        for statement in role_statements(template, role):
            actions = [str(a).lower() for a in as_list(statement.get("Action", []))]
            if not any(a.startswith("s3:delete") for a in actions):
                continue
            if role != "ExpireRole":
                problems.append(f"{role}: no s3:Delete*, only ExpireRole removes objects")
            for resource in as_list(statement.get("Resource")):
                text = resource_text(resource)
                if "/v1/snapshots/*" not in text and "/v1/journal/*" not in text:
                    problems.append(
                        f"{role}: deletes only under v1/snapshots/ and v1/journal/, got {resource}"
                    )
    return problems


# The alarms on the metrics our own code emits: (alarm, metric, threshold parameter or None).
METRIC_ALARMS = [
    ("RecordsFailedAlarm", "RecordsFailed", None),
    ("BackupLagAlarm", "BackupLagSeconds", "BackupLagAlarmSeconds"),
    ("NoncurrentDaysNeededAlarm", "NoncurrentDaysNeeded", "NoncurrentVersionRetentionDays"),
]


def check_metric_alarms(template: Template) -> list[str]:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    problems = []
    for name, metric, threshold in METRIC_ALARMS:
        alarm = alarms.get(name, {}).get("Properties", {})
        if alarm.get("MetricName") != metric or alarm.get("Namespace") != "ddb-backup":
            problems.append(f"{name} must watch ddb-backup {metric}")
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        if dimensions.get("table") != {"Ref": "SourceTableName"}:
            problems.append(f"{name} must watch this stack's table")
        if threshold is not None and alarm.get("Threshold") != {"Ref": threshold}:
            problems.append(f"{name}: threshold from the {threshold} parameter")
    return problems


CHECKS: dict[str, Check] = {
    "partial_batch_responses": check_partial_batch_responses,
    "bounded_retries": check_bounded_retries,
    "on_failure_queue": check_on_failure_queue,
    "versioning": check_versioning,
    "public_access_block": check_public_access_block,
    "tls_only": check_tls_only,
    "encryption": check_encryption,
    "lifecycle": check_lifecycle,
    "backup_function": check_backup_function,
    "backup_function_s3_writes_only": check_backup_function_s3_writes_only,
    "scratch_tables_only": check_scratch_tables_only,
    "journal_settings": check_journal_settings,
    "iterator_age_alarm": check_iterator_age_alarm,
    "scheduled_tools": check_scheduled_tools,
    "settings_capture": check_settings_capture,
    "scheduled_state": check_scheduled_state,
    "scheduled_expire": check_scheduled_expire,
    "deletes_only_snapshots": check_deletes_only_snapshots,
    "metric_alarms": check_metric_alarms,
}


# ---------------------------------------------------------------- mutations (each breaks one check)


def _backup_statements(t: Template) -> list[Any]:
    return t["Resources"]["BackupFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]


def _drill_statements(t: Template) -> list[Any]:
    return t["Resources"]["DrillRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def _compaction_statements(t: Template) -> list[Any]:
    return t["Resources"]["CompactionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]


def _set_sid(statements_: list[Any], sid: str, key: str, value: Any) -> None:
    for statement in statements_:
        if isinstance(statement, dict) and statement.get("Sid") == sid:
            statement[key] = value
            return
    raise AssertionError(f"no statement {sid}")


MUTATIONS: dict[str, Callable[[Template], None]] = {
    "partial_batch_responses": lambda t: the_mapping(t).pop("FunctionResponseTypes"),
    "bounded_retries": lambda t: the_mapping(t).update(MaximumRetryAttempts=-1),
    "on_failure_queue": lambda t: the_mapping(t).pop("DestinationConfig"),
    "versioning": lambda t: the_bucket(t)["VersioningConfiguration"].update(Status="Suspended"),
    "public_access_block": lambda t: the_bucket(t)["PublicAccessBlockConfiguration"].update(
        RestrictPublicBuckets=False
    ),
    "tls_only": lambda t: props(t, "BackupBucketPolicy")["PolicyDocument"]["Statement"][0].update(
        Effect="Allow"
    ),
    "encryption": lambda t: the_bucket(t).pop("BucketEncryption"),
    "lifecycle": lambda t: the_bucket(t)["LifecycleConfiguration"]["Rules"].pop(1),
    "backup_function": lambda t: props(t, "BackupFunction")["Environment"]["Variables"].pop(
        "BACKUP_BUCKET"
    ),
    "backup_function_s3_writes_only": lambda t: _set_sid(
        _backup_statements(t), "WriteItemVersions", "Action", ["s3:PutObject", "s3:DeleteObject"]
    ),
    "scratch_tables_only": lambda t: _set_sid(
        _drill_statements(t), "ScratchTablesOnly", "Resource", "*"
    ),
    "journal_settings": lambda t: props(t, "BackupFunction")["Environment"]["Variables"].pop(
        "BACKUP_JOURNAL_ONLY"
    ),
    "iterator_age_alarm": lambda t: t["Resources"].pop("IteratorAgeAlarm"),
    "scheduled_tools": lambda t: props(t, "DrillFunction").pop("Events"),
    "settings_capture": lambda t: _set_sid(
        t["Resources"]["CompactionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ],
        "ReadTheSourceTableSettings",
        "Action",
        ["dynamodb:DescribeTable"],
    ),
    "scheduled_state": lambda t: _set_sid(
        _compaction_statements(t), "WriteScheduledState", "Action", "s3:GetObject"
    ),
    "scheduled_expire": lambda t: props(t, "ExpireFunction")["Environment"]["Variables"].pop(
        "KEEP_LAST"
    ),
    "deletes_only_snapshots": lambda t: _set_sid(
        _backup_statements(t), "WriteItemVersions", "Action", ["s3:PutObject", "s3:DeleteObject"]
    ),
    "metric_alarms": lambda t: props(t, "BackupLagAlarm").update(MetricName="BackupLag"),
}


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def test_template_passes_cfn_lint() -> None:
    # GIVEN the deployment template WHEN cfn-lint checks it THEN no error and no warning
    result = run_cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_cfn_lint_run_catches_a_broken_template(tmp_path: Path) -> None:
    # GIVEN the template with an impossible Lambda memory size WHEN linted THEN it fails
    broken = tmp_path / "template.yaml"
    text = TEMPLATE.read_text(encoding="utf-8")
    assert "MemorySize: 512" in text
    broken.write_text(text.replace("MemorySize: 512", "MemorySize: 5"), encoding="utf-8")
    result = run_cfn_lint(broken)
    assert result.returncode != 0
    assert "E3034" in result.stdout


def test_template_is_sam(template: Template) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(template["Outputs"]) >= {
        "BackupBucketName",
        "BackupFunctionArn",
        "BackupFailureQueueUrl",
    }


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_template_has_property(template: Template, name: str) -> None:
    # GIVEN the template WHEN the check reads it THEN it finds nothing wrong
    assert CHECKS[name](template) == []


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_detects_its_breakage(template: Template, name: str) -> None:
    # GIVEN a copy of the template broken in one place WHEN the check reads it THEN it objects
    broken = copy.deepcopy(template)
    MUTATIONS[name](broken)
    assert CHECKS[name](broken) != []


def test_every_check_has_a_mutation() -> None:
    assert set(MUTATIONS) == set(CHECKS)


def test_kms_is_optional_and_scoped(template: Template) -> None:
    # The KMS statement exists only under the UseKms condition and names the key only.
    entries = _backup_statements(template)
    kms = [e for e in entries if "Fn::If" in e and e["Fn::If"][0] == "UseKms"]
    assert len(kms) == 1
    statement = kms[0]["Fn::If"][1]
    assert set(statement["Action"]) <= {"kms:GenerateDataKey", "kms:Encrypt"}
    assert statement["Resource"] == {"Ref": "KmsKeyArn"}
    assert kms[0]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def test_backup_function_writes_nowhere_but_its_folders(template: Template) -> None:
    broken = copy.deepcopy(template)
    _set_sid(
        _backup_statements(broken),
        "WriteItemVersions",
        "Resource",
        {"Fn::Sub": "${BackupBucket.Arn}/*"},
    )
    assert any("may only write under" in p for p in check_backup_function_s3_writes_only(broken))


@pytest.mark.parametrize("function", ["BackupFunction", "CompactionFunction"])
def test_writers_may_check_their_buckets_versioning(template: Template, function: str) -> None:
    """The Lambda (at a cold start) and the scheduled compaction refuse an unversioned
    bucket: without s3:GetBucketVersioning they could not tell (docs/OPERATIONS.md)."""
    checks = [
        s
        for s in role_statements(template, function_role(template, function))
        if s.get("Action") == "s3:GetBucketVersioning" and s.get("Effect") == "Allow"
    ]
    assert [s["Resource"] for s in checks] == [{"Fn::GetAtt": ["BackupBucket", "Arn"]}]


def test_a_backup_function_reading_more_than_the_versioning_is_caught(template: Template) -> None:
    broken = copy.deepcopy(template)
    _set_sid(_backup_statements(broken), "CheckBucketVersioning", "Resource", "*")
    assert check_backup_function_s3_writes_only(broken) == [
        "the backup function may check versioning of its bucket only"
    ]


def test_journal_retention_is_a_parameter_checked_by_cfn_lint(template: Template) -> None:
    parameters = template["Parameters"]
    assert parameters["JournalRetentionDays"]["MinValue"] == 0
    assert parameters["JournalOnly"]["AllowedValues"] == ["false", "true"]
    assert parameters["VerifyJournalEvery"]["Default"] == 24
    assert (parameters["FullEvery"]["Default"], parameters["FullEvery"]["MinValue"]) == (0, 0)


def test_expire_may_delete_its_snapshots_folder_only(template: Template) -> None:
    broken = copy.deepcopy(template)
    statements_ = broken["Resources"]["ExpireRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    _set_sid(statements_, "ExpireSnapshots", "Resource", {"Fn::Sub": "${BackupBucket.Arn}/*"})
    assert any(
        "deletes only under v1/snapshots/" in p for p in check_deletes_only_snapshots(broken)
    )


@pytest.mark.parametrize("function", sorted(SCHEDULED))
def test_scheduled_commands_exist(function: str) -> None:
    # The image's command names a handler that the package really has.
    module, _, name = SCHEDULED[function][0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def emitted_metrics(out: str) -> dict[str, tuple[str, dict[str, str]]]:
    """metric name -> (namespace, dimensions) of the EMF documents in `out`."""
    found = {}
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = {d: document[d] for d in dimension_set}
                for metric in directive["Metrics"]:
                    found[metric["Name"]] = (directive["Namespace"], dimensions)
    return found


def alarm_watches(template: Template, alarm: str, table: str) -> tuple[str, dict[str, str]]:
    """(namespace, dimensions) an alarm watches, the stack's table being `table`."""
    properties = props(template, alarm)
    dimensions = {
        d["Name"]: table if d["Value"] == {"Ref": "SourceTableName"} else d["Value"]
        for d in properties["Dimensions"]
    }
    return properties["Namespace"], dimensions


def test_lambda_alarms_watch_what_the_backup_lambda_emits(
    template: Template,
    deliver: Callable[[list[dict[str, Any]]], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the backup Lambda's environment as the template sets it
    env = props(template, "BackupFunction")["Environment"]["Variables"]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", env["POWERTOOLS_SERVICE_NAME"])
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    # WHEN it stores a batch of table `orders`
    capsys.readouterr()
    assert deliver(records_of("stream_event_orders")) == {"batchItemFailures": []}
    emitted = emitted_metrics(capsys.readouterr().out)
    # THEN each alarm watches exactly the namespace, name and dimensions it emitted
    for alarm, metric, _ in METRIC_ALARMS[:2]:
        assert metric in emitted, sorted(emitted)
        assert alarm_watches(template, alarm, "orders") == emitted[metric]


def test_retention_alarm_watches_what_the_scheduled_expire_emits(
    template: Template, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the expire function's environment (no service name: the metric has `table` only)
    assert (
        "POWERTOOLS_SERVICE_NAME"
        not in props(template, "ExpireFunction")["Environment"]["Variables"]
    )
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    capsys.readouterr()
    emit("orders", "NoncurrentDaysNeeded", MetricUnit.Count, 9)
    emitted = emitted_metrics(capsys.readouterr().out)
    assert (
        alarm_watches(template, "NoncurrentDaysNeededAlarm", "orders")
        == emitted["NoncurrentDaysNeeded"]
    )
