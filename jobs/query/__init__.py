"""`ddb-backup query`: a read-only DuckDB session over a backup, and result formats."""
