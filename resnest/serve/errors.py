"""The one exception type request handling raises: it carries the HTTP status to answer with."""


class InferenceError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, ``str(e)`` the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
