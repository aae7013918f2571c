"""Shared pytest set-up. Fixtures live in fixtures_<area>.py modules, imported here."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from fixtures_data import *  # noqa: E402,F401,F403
from fixtures_dynamics import *  # noqa: E402,F401,F403
from fixtures_nnunet import *  # noqa: E402,F401,F403
from fixtures_panels import gui  # noqa: E402,F401 (the panel tests' slicer.util stand-ins)
from fixtures_slicer import *  # noqa: E402,F401,F403
