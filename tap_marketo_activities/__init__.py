"""Singer tap for Marketo Engage lead activities, lead changes and deleted leads."""
