"""``python -m prior_wrappers``: the ``prior-wrappers`` command line (:mod:`prior_wrappers.cli`)."""

from prior_wrappers.cli import main

raise SystemExit(main())
