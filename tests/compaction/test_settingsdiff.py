"""The settings diff: one line per difference, indexes and tags compared by name."""

from __future__ import annotations

from compaction.settingsdiff import diff_settings
from compaction.tablesettings import TABLE, TAGS, TIME_TO_LIVE, Part, TableSettings


def _settings(**parts: Part) -> TableSettings:
    return TableSettings("orders", 1, parts)


def _index(name: str, projection: str = "ALL") -> dict[str, object]:
    return {"IndexName": name, "Projection": {"ProjectionType": projection}}


def test_the_same_settings_have_no_differences() -> None:
    settings = _settings(**{TABLE: Part({"GlobalSecondaryIndexes": [_index("a"), _index("b")]})})
    reordered = _settings(**{TABLE: Part({"GlobalSecondaryIndexes": [_index("b"), _index("a")]})})
    assert diff_settings(settings, reordered) == []


def test_indexes_added_removed_and_changed_are_one_line_each() -> None:
    old = _settings(**{TABLE: Part({"GlobalSecondaryIndexes": [_index("a"), _index("b")]})})
    new = _settings(
        **{TABLE: Part({"GlobalSecondaryIndexes": [_index("b", "KEYS_ONLY"), _index("c")]})}
    )
    value = '{"IndexName": "%s", "Projection": {"ProjectionType": "ALL"}}'
    assert diff_settings(old, new) == [
        "- table.GlobalSecondaryIndexes[a]: " + value % "a",
        '~ table.GlobalSecondaryIndexes[b].Projection.ProjectionType: "ALL" -> "KEYS_ONLY"',
        "+ table.GlobalSecondaryIndexes[c]: " + value % "c",
    ]


def test_ttl_capacity_and_tags() -> None:
    old = _settings(
        **{
            TABLE: Part({"ProvisionedThroughput": {"ReadCapacityUnits": 5}}),
            TIME_TO_LIVE: Part({"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}),
            TAGS: Part([{"Key": "team", "Value": "a"}]),
        }
    )
    new = _settings(
        **{
            TABLE: Part({"ProvisionedThroughput": {"ReadCapacityUnits": 10}}),
            TIME_TO_LIVE: Part({"TimeToLiveStatus": "DISABLED"}),
            TAGS: Part([{"Key": "team", "Value": "b"}, {"Key": "env", "Value": "x"}]),
        }
    )
    assert diff_settings(old, new) == [
        "~ table.ProvisionedThroughput.ReadCapacityUnits: 5 -> 10",
        '- time_to_live.AttributeName: "exp"',
        '~ time_to_live.TimeToLiveStatus: "ENABLED" -> "DISABLED"',
        '+ tags[env]: {"Key": "env", "Value": "x"}',
        '~ tags[team].Value: "a" -> "b"',
    ]


def test_a_part_captured_on_one_side_only_says_so() -> None:
    old = _settings(**{TAGS: Part([])})
    new = _settings(**{TAGS: Part(not_captured="ListTagsOfResource: AccessDeniedException")})
    assert diff_settings(old, new) == [
        "? tags: not captured in the newer settings (ListTagsOfResource: AccessDeniedException)"
    ]
    assert diff_settings(old, new, parts=[TABLE]) == []
