"""``python -m bench``: run every benchmark and regenerate BENCHMARKS.md (see bench/run.py)."""

from bench.run import main

raise SystemExit(main())
