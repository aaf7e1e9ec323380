"""pyarrow's S3 filesystem configured like our boto3 clients (endpoint, region, credentials)."""

from __future__ import annotations

from urllib.parse import urlparse

import pyarrow.fs as pafs

from jobs.cli.clients import DEFAULT_REGION, AwsSettings, session_for


def s3_filesystem(settings: AwsSettings) -> pafs.S3FileSystem:
    session = session_for(settings)
    credentials = session.get_credentials()
    options: dict[str, object] = {"region": session.region_name or DEFAULT_REGION}
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.update(access_key=frozen.access_key, secret_key=frozen.secret_key)
        if frozen.token:
            options["session_token"] = frozen.token
    endpoint = settings.endpoint_url or session.client("s3").meta.endpoint_url
    if settings.endpoint_url or _is_custom(endpoint):
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc
        options["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**options)


def _is_custom(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    return not host.endswith(".amazonaws.com")
