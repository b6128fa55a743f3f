"""``python -m tap_marketo_activities`` runs the tap, like the console script."""

from tap_marketo_activities.tap import TapMarketoActivities

TapMarketoActivities.cli()
