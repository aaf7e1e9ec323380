"""Operations: backfill, scheduled runs, retention and the restore drill."""
