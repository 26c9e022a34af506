"""Optional RFC 3161 trusted timestamps on checkpoints (FACETRAIL_AUDIT_TSA_URL).

A time-stamping authority countersigns the checkpoint's signed text, so its time does not rest
on the server's clock nor on the signing key alone. The token travels inside the checkpoint as
one more signature line of the signed note, `— rfc3161 base64(0x00000000 || DER TimeStampResp)`:
witnesses keep it with the checkpoint, and verifiers that do not know it skip it (a signed note's
unknown signatures are ignored). rfc3161-client builds the request and verifies the answer.
"""

from __future__ import annotations

import base64
from datetime import datetime

import httpx
from cryptography import x509
from rfc3161_client import (
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client.base import HashAlgorithm

NAME = "rfc3161"  # the signature line's key name
TIMEOUT = 10


class TimestampError(Exception):
    pass


def fetch(url: str, data: bytes) -> bytes:
    """A TimeStampResp (DER) for SHA-256 of `data` from the TSA at `url`, checked against the request."""
    request = TimestampRequestBuilder(data=data, hash_algorithm=HashAlgorithm.SHA256, nonce=True,
                                      cert_req=True).build()
    try:
        answer = httpx.post(url, content=request.as_bytes(), timeout=TIMEOUT,
                            headers={"Content-Type": "application/timestamp-query"})
    except httpx.HTTPError as exc:
        raise TimestampError(f"TSA {url} not reached: {exc}") from None
    if answer.status_code != 200:
        raise TimestampError(f"TSA {url} answered HTTP {answer.status_code}")
    response = decode_timestamp_response(answer.content)
    if response.status not in (0, 1):  # granted, granted with modifications
        raise TimestampError(f"TSA {url} refused: status {response.status} {response.status_string}")
    if response.tst_info.nonce != request.nonce:
        raise TimestampError(f"TSA {url} answered another request (nonce)")
    return answer.content


def signature_line(token: bytes) -> str:
    return f"\u2014 {NAME} {base64.b64encode(bytes(4) + token).decode()}"


def token_in(note: str) -> bytes | None:
    """The timestamp token of a signed note, if it carries one."""
    for line in note.split("\n\n", 1)[-1].splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == NAME:
            return base64.b64decode(parts[2])[4:]
    return None


def verify(token: bytes, data: bytes, roots_pem: bytes) -> datetime:
    """The time a TSA whose certificate chains to one of `roots_pem` vouches `data` existed;
    raises TimestampError if the token does not cover `data` or does not verify."""
    response = decode_timestamp_response(token)
    builder = VerifierBuilder()
    for root in x509.load_pem_x509_certificates(roots_pem):
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify_message(response, data)
    except VerificationError as exc:
        raise TimestampError(f"the timestamp does not verify: {exc}") from None
    return response.tst_info.gen_time
