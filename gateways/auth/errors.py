"""The errors of the security layer: a stable code, a human message, and the
details a client needs to act on it (times, retry delays)."""


class AuthError(Exception):
    # codes and the HTTP status each maps to
    STATUS = {
        "UNAUTHENTICATED": 401,
        "TIMESTAMP_OUT_OF_WINDOW": 401,
        "INVALID_WINDOW": 400,
        "REPLAYED": 401,
        "FORBIDDEN": 403,
        "BANNED": 403,
        "RATE_LIMITED": 429,
        "TOO_MANY_CONNECTIONS": 429,
        "MESSAGE_TOO_LARGE": 413,
    }

    def __init__(self, code: str, message: str, **details):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return self.STATUS[self.code]
