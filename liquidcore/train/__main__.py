"""``python -m liquidcore.train train ...`` / ``evaluate ...`` (the same as ``liquid ...``)."""

from liquidcore.train.cli import main

raise SystemExit(main())
