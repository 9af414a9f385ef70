"""The REST API: targets, their raw pings and health."""
