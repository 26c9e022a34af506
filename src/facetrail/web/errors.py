"""Refusals as HTTP answers, in one place: a code -> status table and one handler.

Every JSON error is `{"code": ..., "detail": ...}`: a `Refused` (any governance, search,
account, source or photo refusal) by its code, FastAPI's and Starlette's own errors
(unknown route, wrong method, bad request fields) by their status, and anything unexpected
as 500 `internal_error` (the exception itself goes to the server's log, not to the client).
The detail is a sentence for a person.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ..errors import Refused
from ..images.decode import DecodeError

DEFAULT_STATUS = 422  # a refusal by a rule: the request was understood, and refused
STATUS = {
    "not_authenticated": 401,
    "not_permitted": 403,
    "not_visible": 403,
    "csrf_token_required": 403,
    "password_change_required": 403,
    "not_found": 404,
    "no_such_search": 404,
    "already_decided": 409,
    "already_confirmed": 409,
    "too_large": 413,
    "too_many_pixels": 413,
    "too_much_memory": 413,
    "rate_limited": 429,
    "busy": 503,  # the CPU pool is full (web/cpu.py): try again after Retry-After
    "audit_log_broken": 503,  # nothing can be recorded, so nothing is done, until the log is checked
    "not_an_image": 400,
    "unsupported_format": 400,
    "truncated": 400,
    "corrupt": 400,
    "empty": 400,
}
PHOTO_PROBLEMS = {
    "not_an_image": "This file is not an image. Upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo.",
    "unsupported_format": "This image format is not supported. Use JPEG, PNG, WebP, GIF, BMP or TIFF.",
    "too_many_pixels": "The photo has too many pixels ({detail}).",
    "too_much_memory": "The photo is too big to decode ({detail}).",
    "too_large": "The photo is too large ({detail}).",
    "truncated": "The photo is incomplete (truncated). Upload the whole file.",
    "corrupt": "The photo is damaged and cannot be read.",
    "empty": "The uploaded file is empty.",
}
HANDLED = (Refused, HTTPException, RequestValidationError, Exception)  # what `answer` turns into JSON


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    code: str = Field(description="Which rule or problem: short, stable, for scripts (e.g. rate_limited)")
    detail: str = Field(description="Why, as a sentence for a person")


# The OpenAPI document says so for every operation (FastAPI's own 422 schema would say otherwise).
RESPONSES: dict = {
    "4XX": {"model": ErrorBody, "description": "Refused: `code` says why (401 sign in or send a token, 403 not "
            "permitted, 404 not found or not yours to see, 422 invalid or refused by a rule, 429 too many: "
            "see Retry-After)"},
    "5XX": {"model": ErrorBody, "description": "The server could not answer (503: busy, see Retry-After)"},
}


def explain(code: str, detail: str) -> str:
    """A sentence for a person about why their photo could not be used."""
    return PHOTO_PROBLEMS[code].format(detail=detail) if code in PHOTO_PROBLEMS else detail


def sentence(message: str) -> str:
    """The message as a sentence: a capital first letter and a full stop."""
    message = message.strip()
    if not message:
        return message
    return message[0].upper() + message[1:] + ("" if message.endswith((".", "!", "?")) else ".")


def status_of(exc: Refused) -> int:
    return STATUS.get(exc.code, DEFAULT_STATUS)


def detail_of(exc: Refused) -> str:
    """What a person is told: a photo problem explained, any other refusal as a sentence."""
    return explain(exc.code, str(exc)) if isinstance(exc, DecodeError) else sentence(str(exc))


def describe(exc: Exception) -> tuple[int, str, str | list, dict[str, str]]:
    """(status, code, detail, headers) of a handled exception."""
    if isinstance(exc, Refused):
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if exc.code == "not_authenticated":
            headers["WWW-Authenticate"] = "Bearer"
        return status_of(exc), exc.code, detail_of(exc), headers
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:] or e['loc'])}: {e['msg']}" for e in exc.errors())
        return 422, "invalid_request", sentence(f"invalid request: {problems}"), {}
    if not isinstance(exc, HTTPException):
        return 500, "internal_error", "Something went wrong on the server; the error was logged.", {}
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return exc.status_code, code, sentence(str(exc.detail)), dict(exc.headers or {})


async def answer(_request: Request, exc: Exception) -> Response:
    """The one error handler: JSON `{"code", "detail"}`; an HTTPException below 400 (a page's
    "sign in first") is answered as the redirect it is."""
    if isinstance(exc, HTTPException) and exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    status, code, detail, headers = describe(exc)
    return JSONResponse({"code": code, "detail": detail}, status_code=status, headers=headers or None)
