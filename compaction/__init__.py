"""Layout reading, folding and snapshots."""
