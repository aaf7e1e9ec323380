"""A GET read in full, with the payload read again when the connection breaks mid-body.

botocore retries a request until its answer's headers arrive; a connection that drops
while the body streams (a reset, a read timeout, a short body) reaches the caller. Such a
break says nothing about the stored object, so it is read again, like s3transfer's
downloads do. Other failures reach the caller unchanged (it names the object).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError

ATTEMPTS = 3


def get_bytes(s3: Any, bucket: str, key: str, version_id: str | None = None) -> bytes:
    request = {"Bucket": bucket, "Key": key}
    if version_id is not None:
        request["VersionId"] = version_id
    attempt = 1
    while True:
        stream = s3.get_object(**request)["Body"]
        try:
            body: bytes = stream.read()
        except BotoCoreError:  # IncompleteReadError, ResponseStreamingError, ReadTimeoutError
            if attempt == ATTEMPTS:
                raise
            attempt += 1
            continue
        return body
