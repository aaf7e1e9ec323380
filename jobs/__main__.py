"""`python -m jobs` is the `ddb-backup` command."""

from __future__ import annotations

import sys

from jobs.main import main

sys.exit(main())
