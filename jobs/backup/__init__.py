"""What users do with a backup: compact it into snapshots, list them, read an item's history."""
