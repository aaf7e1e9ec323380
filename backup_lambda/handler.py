"""Lambda entry point: DynamoDB Streams -> the change journal and versioned S3 objects
(see docs/FORMAT.md)."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from botocore.config import Config as BotoConfig

from backup_lambda.config import Config
from backup_lambda.errors import BackupError
from backup_lambda.processor import process_event
from backup_lambda.versioning import require_versioning
from backup_lambda.writer import ChangeWriter

logger = Logger(service="ddb-backup")
metrics = Metrics(namespace="ddb-backup", service="ddb-backup")

_writer: ChangeWriter | None = None


def _build_writer() -> ChangeWriter:
    config = Config.from_env(os.environ)
    s3 = boto3.client(
        "s3",
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 8},
            max_pool_connections=config.max_workers,
        ),
    )
    # Once per container: a bucket without versioning fails every invocation (Lambda
    # retries the batch; the Errors alarm fires) until it is enabled, losing nothing while
    # the stream holds the records (24 h).
    try:
        versioning = require_versioning(s3, config.bucket)
    except BackupError as e:
        logger.exception("backup bucket refused; failing the invocation", reason=str(e))
        raise
    if (warning := versioning.warning()) is not None:
        logger.warning(warning)
    return ChangeWriter(
        s3,
        config.bucket,
        config.prefix,
        max_workers=config.max_workers,
        journal_only=config.journal_only,
        claim_coverage=True,  # the stream Lambda writes every change of its table
        writer="lambda",
    )


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _writer  # noqa: PLW0603 - one client per container, built on first use
    if _writer is None:
        _writer = _build_writer()
    return process_event(event, _writer, logger, metrics).response()
