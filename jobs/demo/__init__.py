"""`ddb-backup demo`: an embedded local AWS stand-in and a stream reader."""
