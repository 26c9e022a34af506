"""The one refusal type: facetrail will not do what was asked.

Every governance, search, source, account and input refusal is a `Refused` (or a subclass
named after where it comes from). `code` is short, stable and scriptable (the JSON API
answers `{"code": ..., "detail": ...}`, the CLI prints `refused: ...` and exits 2); the
message is for a person. Each front door maps codes to its own answer in one place.
"""

from __future__ import annotations


class Refused(Exception):
    """A refused request: `code` says which rule, the message says why, for a person.
    `retry_after` (seconds) when waiting would help (rate limits)."""

    code = "refused"

    def __init__(self, message: str, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self)
