"""Domain errors shared by every app's services (mapped to HTTP by ``core.api``)."""


class Conflict(Exception):
    """The request is valid but clashes with the current state (HTTP 409)."""

    def __init__(self, message: str, *, code: str = "conflict", details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


class ImmutableRecord(Conflict):
    """Raised on any attempt to change or remove an append-only record."""


class BadQuery(Exception):
    """A query parameter that cannot be used as it is (HTTP 400, by ``core.middleware.QueryGuard``)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
