"""AWS clients for the CLI, built once at the edge from the standard boto3 settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from jobs.cli import config

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class AwsSettings:
    """What the user chose explicitly (flag or config file); None leaves it to boto3's own
    resolution (environment, ~/.aws/config)."""

    endpoint_url: str | None = None
    max_pool_connections: int = 32
    profile: str | None = None
    region: str | None = None


def session_for(settings: AwsSettings) -> boto3.session.Session:
    return boto3.session.Session(profile_name=settings.profile, region_name=settings.region)


def make_client(service: str, settings: AwsSettings) -> Any:
    session = session_for(settings)
    return session.client(
        service,  # type: ignore[call-overload]
        endpoint_url=settings.endpoint_url,
        region_name=session.region_name or DEFAULT_REGION,
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 8},
            max_pool_connections=settings.max_pool_connections,
        ),
    )


@dataclass(frozen=True)
class ClientFactory:
    """A picklable recipe for a client: called on a distributed worker, it builds the client
    there (once per process) from the worker's own AWS settings and credentials."""

    service: str
    settings: AwsSettings

    def __call__(self) -> Any:
        key = (self.service, self.settings)
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = make_client(self.service, self.settings)
        return client


_CLIENTS: dict[tuple[str, AwsSettings], Any] = {}


def settings_from(args: argparse.Namespace, max_pool_connections: int = 32) -> AwsSettings:
    """The AWS settings of parsed (and config-applied) arguments."""
    sources: dict[str, config.Resolved] = getattr(args, "setting_sources", {})

    def chosen(setting: config.Setting) -> Any:
        resolved = sources.get(setting.name)
        if resolved is None:  # arguments not passed through config.apply (tests, callers)
            return getattr(args, setting.name, None)
        return config.aws_value(resolved, setting)

    return AwsSettings(
        endpoint_url=chosen(config.ENDPOINT_URL),
        max_pool_connections=max_pool_connections,
        profile=chosen(config.PROFILE),
        region=chosen(config.REGION),
    )
