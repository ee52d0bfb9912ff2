"""``python -m pushstream.testing.fakes``: run the fake providers (see server.main)."""

from pushstream.testing.fakes.server import main

raise SystemExit(main())
