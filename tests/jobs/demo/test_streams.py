"""jobs.demo.streams: DynamoDB Streams API records turned into Lambda's JSON event shape."""

from __future__ import annotations

import datetime as dt
import json

from jobs.demo.streams import lambda_event, to_lambda_record
from tests.support import ORDERS_STREAM_ARN


def test_api_record_becomes_lambda_json() -> None:
    # GIVEN a record as boto3 returns it (datetime, raw bytes)
    api_record = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": dt.datetime(2026, 11, 28, 0, 0, 0, 500000, dt.UTC),
            "Keys": {"pk": {"B": b"AP8="}},  # moto's doubly encoded key
            "NewImage": {"pk": {"B": b"\x00\xff"}, "bs": {"BS": [b"\x00", b"\xff"]}},
            "OldImage": {"pk": {"B": b"\x00\xff"}},
            "SequenceNumber": "100",
            "SizeBytes": 12,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    # WHEN converted
    record = to_lambda_record(api_record, ORDERS_STREAM_ARN)
    # THEN it is plain JSON in the shape Lambda delivers
    json.dumps(record)
    ddb = record["dynamodb"]
    assert ddb["ApproximateCreationDateTime"] == 1795824000.5
    assert ddb["Keys"] == {"pk": {"B": "AP8="}}
    assert ddb["NewImage"] == {"pk": {"B": "AP8="}, "bs": {"BS": ["AA==", "/w=="]}}
    assert ddb["SequenceNumber"] == "100"
    assert record["eventSourceARN"] == ORDERS_STREAM_ARN
    assert lambda_event([record]) == {"Records": [record]}
