"""Reading a table's stream with the DynamoDB Streams API, in the shape Lambda delivers.

Used by the demo and tests to feed real stream records (from moto) to the handler.
boto3 parses records into Python objects (datetimes, bytes); Lambda delivers JSON
(epoch seconds, base64), so the records are turned back into that shape.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any


def _to_lambda_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _to_lambda_json(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_to_lambda_json(v) for v in value]
    return value


def to_lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    ddb = dict(record["dynamodb"])
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, dt.datetime):
        ddb["ApproximateCreationDateTime"] = created.timestamp()
    image = ddb.get("NewImage") or ddb.get("OldImage") or {}
    # moto 5.x base64-encodes binary values in Keys twice (its images are right); take the
    # key attributes from the image when it holds them, as real DynamoDB's agree anyway.
    ddb["Keys"] = {name: image.get(name, value) for name, value in ddb.get("Keys", {}).items()}
    converted = _to_lambda_json({**record, "dynamodb": ddb})
    converted["eventSourceARN"] = stream_arn
    return dict(converted)


class StreamReader:
    """Follows every shard of a stream from TRIM_HORIZON; `poll()` returns what is new."""

    def __init__(self, streams: Any, stream_arn: str) -> None:
        self._streams = streams
        self._arn = stream_arn
        self._iterators: dict[str, str | None] = {}

    def poll(self) -> list[dict[str, Any]]:
        description = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]
        records: list[dict[str, Any]] = []
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                ).get("ShardIterator")
            while (iterator := self._iterators[shard_id]) is not None:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                batch = page.get("Records", [])
                records += [to_lambda_record(record, self._arn) for record in batch]
                self._iterators[shard_id] = page.get("NextShardIterator", iterator)
                if not batch:
                    break
        return records


def read_stream(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record currently in the stream, shard by shard, in Lambda's record shape."""
    return StreamReader(streams, stream_arn).poll()


def lambda_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}
