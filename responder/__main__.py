"""``python -m responder``: the same as the ``responder`` command."""

from responder.commands.cli import main

raise SystemExit(main())
