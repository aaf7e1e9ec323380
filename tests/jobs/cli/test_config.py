"""Settings the AWS CLI way: flag > environment > config file > default."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backup_lambda.errors import UserInputError
from jobs.cli import config
from jobs.cli.clients import settings_from
from jobs.main import main


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and a home of our own, with the config search switched on."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("DDB_BACKUP_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def effective(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, dict[str, object]]:
    capsys.readouterr()
    assert main(["config", "--json", *argv]) == 0
    payload = json.loads(capsys.readouterr().out.splitlines()[-1])
    return {row["setting"]: row for row in payload["settings"]}


def test_precedence_flag_over_env_over_file_over_default(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a bucket in the config file
    write(home / "work" / "ddb-backup.toml", 'bucket = "from-file"\nprefix = "p-file"\n')
    # THEN the file's value is used, and the prefix too
    rows = effective(capsys)
    assert (rows["bucket"]["value"], rows["bucket"]["source"]) == (
        "from-file",
        str(home / "work" / "ddb-backup.toml"),
    )
    assert rows["prefix"]["value"] == "p-file"
    # WHEN the environment sets it THEN the environment wins over the file
    monkeypatch.setenv("BACKUP_BUCKET", "from-env")
    rows = effective(capsys)
    assert (rows["bucket"]["value"], rows["bucket"]["source"]) == ("from-env", "env BACKUP_BUCKET")
    # WHEN the flag sets it THEN the flag wins over both
    rows = effective(capsys, "--bucket", "from-flag")
    assert (rows["bucket"]["value"], rows["bucket"]["source"]) == ("from-flag", "flag")
    # AND a setting set nowhere keeps its default
    assert (rows["settle"]["value"], rows["settle"]["source"]) == (300, "default")


def test_working_directory_file_wins_over_the_user_file_key_by_key(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = write(
        home / "home" / ".config" / "ddb-backup" / "config.toml",
        'bucket = "user-bucket"\nprefix = "user-prefix"\n',
    )
    local = write(home / "work" / "ddb-backup.toml", 'bucket = "local-bucket"\n')
    rows = effective(capsys)
    assert (rows["bucket"]["value"], rows["bucket"]["source"]) == ("local-bucket", str(local))
    assert (rows["prefix"]["value"], rows["prefix"]["source"]) == ("user-prefix", str(user))


def test_xdg_config_home_is_where_the_user_file_lives(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    write(home / "xdg" / "ddb-backup" / "config.toml", 'bucket = "xdg-bucket"\n')
    assert effective(capsys)["bucket"]["value"] == "xdg-bucket"


def test_a_table_section_wins_over_the_top_level_for_that_table(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        home / "work" / "ddb-backup.toml",
        "keep_last = 5\nshard_digits = 1\n[tables.orders]\nkeep_last = 48\n"
        'restore_to = "{table}-restored"\n',
    )
    orders = effective(capsys, "--table", "orders")
    users = effective(capsys, "--table", "users")
    assert orders["keep_last"]["value"] == 48
    assert orders["keep_last"]["source"].endswith("[tables.orders]")
    assert users["keep_last"]["value"] == 5
    assert orders["shard_digits"]["value"] == 1
    assert orders["restore_to"]["value"] == "{table}-restored"
    assert users["restore_to"]["value"] is None


def test_environment_names_the_scheduled_lambda_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKUP_TABLES", "orders,users")
    monkeypatch.setenv("SETTLE_SECONDS", "60")
    monkeypatch.setenv("MAX_RPO_SECONDS", "900")
    rows = effective(capsys)
    assert rows["scheduled_tables"]["value"] == "orders,users"
    assert (rows["settle"]["value"], rows["settle"]["source"]) == (60, "env SETTLE_SECONDS")
    assert rows["max_rpo"]["value"] == 900


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bucket = ", "not valid TOML"),
        ('buckett = "x"', "unknown setting 'buckett'"),
        ('[tables.orders]\nbucket = "x"', "cannot be set per table"),
        ('keep_last = "many"', "keep_last: expected a whole number"),
        ("keep_last = 0", "keep_last: expected a whole number >= 1"),
        ("shard_digits = 7", "shard_digits: expected 0, 1, 2 or 3"),
        ("keep_days = true", "keep_days must be a string or a number"),
        ("[tables]\norders = 3\n", "sections hold settings"),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(home / "work" / "ddb-backup.toml", text)
    capsys.readouterr()
    code = main(["snapshots", "--table", "t", "--bucket", "b"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SETTLE_SECONDS", "soon")
    capsys.readouterr()
    assert main(["compact", "--bucket", "b", "--table", "t"]) == 2
    assert "environment SETTLE_SECONDS: settle: expected a whole number" in capsys.readouterr().err


def test_an_explicit_config_file_that_does_not_exist_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DDB_BACKUP_CONFIG", str(tmp_path / "nope.toml"))
    assert main(["config"]) == 2
    assert "DDB_BACKUP_CONFIG" in capsys.readouterr().err


def test_a_missing_bucket_says_every_way_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["snapshots", "--table", "orders"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "ddb-backup: error: no bucket: pass --bucket, set BACKUP_BUCKET or put bucket = ... "
        "in ddb-backup.toml"
    )


def test_a_missing_required_per_table_setting_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["expire", "--bucket", "b", "--table", "orders"]) == 2
    assert "no keep last: pass --keep-last" in capsys.readouterr().err


def test_config_prints_a_table_with_sources(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "work" / "ddb-backup.toml", 'bucket = "b1"\n[tables.orders]\nmax_wcu = 500\n')
    monkeypatch.setenv("BACKUP_PREFIX", "prod")
    capsys.readouterr()
    assert main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"config file {home / 'work' / 'ddb-backup.toml'}: read" in lines
    assert "prefix\tprod\tenv BACKUP_PREFIX" in lines
    assert "per-table sections: orders (show one with --table)" in lines


def args_with(**values: object) -> argparse.Namespace:
    names = {"bucket", "prefix", "profile", "region", "endpoint_url", "table"}
    return argparse.Namespace(**dict.fromkeys(names) | values)


def test_aws_settings_hand_boto3_only_flag_and_file_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a region in the environment and an endpoint from a flag
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    args = args_with(endpoint_url="http://localhost:1")
    args.setting_sources = config.apply(args, config.Config(env={"AWS_REGION": "eu-west-1"}))
    settings = settings_from(args)
    # THEN the flag's endpoint is passed, the environment's region is left to boto3
    assert settings.endpoint_url == "http://localhost:1"
    assert settings.region is None
    # AND a file's region is passed explicitly
    loaded = config.Config(
        env={}, files=[config.ConfigFile(Path("f.toml"), {"region": "ap-south-1"}, {})]
    )
    args = args_with()
    args.setting_sources = config.apply(args, loaded)
    assert settings_from(args).region == "ap-south-1"


def test_an_unknown_profile_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["snapshots", "--bucket", "b", "--table", "t", "--profile", "no-such-profile"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no-such-profile" in err
    assert "Traceback" not in err


def test_region_flag_reaches_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.cli.clients import AwsSettings, make_client

    client = make_client("s3", AwsSettings(region="eu-central-1"))
    assert client.meta.region_name == "eu-central-1"


def test_settings_cannot_be_declared_twice_differently() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        config.register(config.Setting("bucket", int))


def test_restore_target_template(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.restore.command import expand_target

    as_of = 1_795_874_400_500_000  # 2026-11-28T14:00:00.5Z
    assert expand_target("{table}-at-{as_of}", "orders", as_of, as_of) == (
        "orders-at-20261128T140000Z"
    )
    assert expand_target("{table}-{date}", "orders", as_of, as_of) == "orders-20261128"
    with pytest.raises(UserInputError, match=r"only \{table\}, \{as_of\} and \{date\}"):
        expand_target("{tabel}", "orders", as_of, as_of)
