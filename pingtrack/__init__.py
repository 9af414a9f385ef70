"""The `pingtrack` command: operator commands and the entry points of every service."""
