"""`pip install ddb-backup` alone (no extras) gives a working CLI (issue 17).

The package is installed from this checkout into a fresh virtualenv without any extra, and
that venv's `ddb-backup` runs against a moto server started here: `--version`, `backfill`,
`compact`, `snapshots` and `query` work; a dask-only flag without dask and the demo without
moto say in one line which extra to install.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = "installed"
BUCKET = "install-test"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bare_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `ddb-backup` of a fresh venv holding the package and its base dependencies only."""
    work = tmp_path_factory.mktemp("bare-install")
    source = work / "src"
    # A copy of the sources, so the build writes nothing into the checkout.
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".dynalite", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
        ),
    )
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(  # noqa: S603 - fixed argv, the venv this fixture made
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return env_dir / "bin" / "ddb-backup"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def run(cli: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ["HOME"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "DDB_BACKUP_CONFIG": os.environ["DDB_BACKUP_CONFIG"],
        "AWS_CONFIG_FILE": os.environ["AWS_CONFIG_FILE"],
        "AWS_SHARED_CREDENTIALS_FILE": os.environ["AWS_SHARED_CREDENTIALS_FILE"],
    }
    return subprocess.run(  # noqa: S603 - the installed CLI with the test's own arguments
        [str(cli), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def clients(endpoint: str) -> tuple[Any, Any]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return (
        session.client("s3", endpoint_url=endpoint),
        session.client("dynamodb", endpoint_url=endpoint),
    )


def test_the_bare_install_has_no_extras(bare_cli: Path) -> None:
    python = bare_cli.parent / "python"
    for module, present in [
        ("pyarrow", True),
        ("duckdb", True),
        ("moto", False),
        ("distributed", False),
    ]:
        found = subprocess.run(  # noqa: S603 - fixed argv
            [
                str(python),
                "-c",
                f"import importlib.util as u; print(bool(u.find_spec({module!r})))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert found == str(present), module


def test_the_bare_install_backs_up_compacts_and_queries(bare_cli: Path, moto_endpoint: str) -> None:
    version = run(bare_cli, moto_endpoint, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("ddb-backup ")

    s3, dynamodb = clients(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for i in range(7):
        dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})

    common = ("--bucket", BUCKET, "--table", TABLE, "--quiet")
    backfill = run(bare_cli, moto_endpoint, "backfill", *common)
    assert backfill.returncode == 0, backfill.stderr
    compact = run(bare_cli, moto_endpoint, "compact", *common, "--json")
    assert compact.returncode == 0, compact.stderr
    assert json.loads(compact.stdout.splitlines()[-1])["items"] == 7

    snapshots = run(bare_cli, moto_endpoint, "snapshots", *common, "--json")
    assert snapshots.returncode == 0, snapshots.stderr
    assert len(json.loads(snapshots.stdout.splitlines()[-1])["snapshots"]) == 1

    query = run(
        bare_cli,
        moto_endpoint,
        "query",
        *common,
        "--format",
        "jsonl",
        "SELECT CAST(sum(n) AS INTEGER) AS total, count(*) AS items FROM items",
    )
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout.splitlines()[-1]) == {"total": 21, "items": 7}


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (
            ("compact", "--bucket", BUCKET, "--table", TABLE, "--quiet", "--executor", "dask"),
            "dask",
        ),
        (("demo",), "demo"),
    ],
)
def test_an_optional_feature_without_its_extra_is_one_line(
    bare_cli: Path, moto_endpoint: str, args: tuple[str, ...], extra: str
) -> None:
    done = run(bare_cli, moto_endpoint, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"ddb-backup[{extra}]" in lines[0]
