"""`ddb-backup restore`: planning, the target table, and writing with BatchWriteItem."""
