"""``python -m service``: the ``liquid`` command."""

from service.cli import main

raise SystemExit(main())
