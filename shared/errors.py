"""The exception tree; the API maps these to 4xx in one handler."""


class PingtrackError(Exception):
    """Root of every error pingtrack raises on purpose."""


class ConfigError(PingtrackError):
    """A setting is missing or out of range."""


class NotFound(PingtrackError):
    """The named target (or other object) does not exist."""


class InvalidInput(PingtrackError):
    """The caller sent something we cannot accept."""


class Conflict(PingtrackError):
    """The request clashes with the object's state (e.g. resuming a stopped target)."""


class MalformedMessage(PingtrackError):
    """A message on the wire cannot be decoded; it goes to the dead-letter queue.

    `code` is the reason in one word (shared/constants.py DeadReason for results)."""

    def __init__(self, reason: str, code: str = "bad_shape") -> None:
        super().__init__(reason)
        self.code = code
