"""``python -m dynsweep``: the same as the ``dynsweep`` command."""

from dynsweep.cli import main

raise SystemExit(main())
