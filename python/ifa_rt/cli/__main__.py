"""`python -m ifa_rt.cli ...`: the same as the `ifa-rt` console script."""

from . import main

raise SystemExit(main())
