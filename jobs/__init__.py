"""Runnable jobs: the ddb-backup CLI."""
