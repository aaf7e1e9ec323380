"""Fault injection: S3 and DynamoDB failures at every API call site of compact, restore,
query, import-export, backfill and the backup Lambda (journal and item objects), with the
end state checked as exactly as the functional tests check it.

What is injected, where (tests/faults/injector.py): every request that any boto3 client
in the process sends to in-process moto passes through the injector, on every attempt
botocore makes, whichever session or cached client sent it. A rule is "fail the Nth
matching call of OPERATION with FAULT, K times" (K None: for good); a step
(tests/faults/steps.py) is one call site, named by operation and URL or body. Faults:

- error answers, parsed and retried by botocore like the real ones: S3 `SlowDown` (503),
  `InternalError` (500), `ServiceUnavailable` (503); DynamoDB
  `ProvisionedThroughputExceededException`, `ThrottlingException`, `InternalServerError`
  (500), `ServiceUnavailable` (503);
- the network: a read timeout or a connection reset before the server saw the request,
  and a lost answer (the server applied the request, the client timed out: botocore sends
  it again);
- a broken payload: a GET's body resets or ends short after the headers arrived, which
  botocore's retries do not cover (the readers read it again).

What is checked:

- transient faults (every step failing twice in a row, one "storm" per fault): the run
  succeeds, every step met its faults, and the result is exact: a snapshot holds exactly
  the fold's state (`Backup.oracle`) and every file its manifest pins is there with its
  size, checksum and rows; a restore target holds exactly the state; a query answers
  exactly; the Lambda reports no failure, each item's history is complete and in order and
  every stored change is in a journal object; a backfill stored exactly the source table;
  an import's snapshot holds exactly the full export and the state after the incremental
  export is exactly the export's;
- persistent faults (one per step, the faults taken in turn): one line on stderr, exit
  status 1, no traceback; no snapshot visible for the as-of, or a whole one where the
  commit itself went through; no partial query answer; a rerun without the fault is exact
  (a restore converges, an import resumes); the Lambda reports exactly the changes it
  could not store, and delivery again from the checkpoint completes the backup (the
  re-delivered records are harmless replays).

Retries do not sleep here (botocore's backoff and the restore's jitter are recorded
instead) and listings come in pages of a few versions, so each step with pages has a
second page to fail. Adding a call site: one `Step` line in steps.py, in the tuple of the
job that calls it; the storms and the persistent cases then cover it.
"""
