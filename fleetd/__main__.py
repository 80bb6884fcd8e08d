from __future__ import annotations

import sys

from fleetd.cli import main

sys.exit(main())
