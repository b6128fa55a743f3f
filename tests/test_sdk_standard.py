"""The SDK's own standard tap tests, run against a simulator started for this module."""

from __future__ import annotations

import atexit

from singer_sdk.testing import get_tap_test_class

from tap_marketo_activities.simulator import MarketoSimulator, World
from tap_marketo_activities.tap import TapMarketoActivities

# get_tap_test_class needs its config when the class is built, so the simulator starts at
# import time and stops when the test process exits.
_SIMULATOR = MarketoSimulator(World.seed_afternoon(rows=400, seed=2), now="2024-04-12T16:00:00Z")
_SIMULATOR.start()
atexit.register(_SIMULATOR.stop)

TestTapMarketoActivities = get_tap_test_class(
    tap_class=TapMarketoActivities,
    config={
        "base_url": _SIMULATOR.base_url,
        "client_id": "simulator",
        "client_secret": "simulator",
        "start_date": "2024-04-12T12:00:00Z",
    },
)
