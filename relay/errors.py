"""The relay's one exception hierarchy: every refusal as an HTTP status,
a machine-readable code and a sentence a person can read.

Handlers never build error responses themselves; they raise one of these
(or let a core :class:`~e2e_recall.errors.ProtocolError` through, which
:func:`from_protocol_error` translates), and one middleware turns it into
``{"error": code, "message": sentence}``.  A refusal never names another
user's data: "not found" is the answer whether a message does not exist or
belongs to someone else.
"""

from __future__ import annotations

from typing import Any

from e2e_recall.errors import (
    CertificateExpired,
    DecodeError,
    InvalidKey,
    ProtocolError,
    RecallRateLimited,
    RecallRefused,
    ReplayedRevocation,
    SignatureInvalid,
    UnsupportedVersion,
    WrongContext,
    WrongSigner,
)
from e2e_recall.recall_rules import REFUSAL_SENTENCES, refusal_sentence

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "NotFound",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "RateLimited",
    "RecallDenied",
    "RelayError",
    "ServiceUnavailable",
    "Unauthorized",
    "Unprocessable",
    "from_protocol_error",
    "unknown_device",
]


class RelayError(Exception):
    """A request the relay refuses; ``code`` is stable, ``message`` is for people.

    ``retry_after`` (seconds) becomes a ``Retry-After`` header, for refusals
    that only mean "not now" (rate limits, a full relay).
    """

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        data: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = dict(data or {})
        self.retry_after = retry_after


class BadRequest(RelayError):
    status = 400
    code = "bad_request"


class Unauthorized(RelayError):
    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"


class NotFound(RelayError):
    status = 404
    code = "not_found"


class Conflict(RelayError):
    status = 409
    code = "conflict"


class Gone(RelayError):
    status = 410
    code = "gone"


class Unprocessable(RelayError):
    """The request was well formed but its content is wrong (an upload whose digest differs)."""

    status = 422
    code = "unprocessable"


class RangeNotSatisfiable(RelayError):
    status = 416
    code = "bad_range"


class RequestTimeout(RelayError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(RelayError):
    status = 413
    code = "too_large"


class RecallDenied(RelayError):
    """A recall refused by policy or window; ``code`` is the core refusal reason."""

    status = 409
    code = "recall_refused"


class RateLimited(RelayError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(RelayError):
    status = 503
    code = "unavailable"


_SENTENCES: dict[type[ProtocolError], tuple[type[RelayError], str]] = {
    UnsupportedVersion: (BadRequest, "This relay does not speak that protocol version."),
    DecodeError: (BadRequest, "The request is not a well-formed e2e-recall message."),
    InvalidKey: (BadRequest, "A key in the request is weak or malformed."),
    SignatureInvalid: (Forbidden, "A signature in the request does not verify."),
    WrongSigner: (Forbidden, "The request is signed by someone who may not sign it."),
    WrongContext: (BadRequest, "The request refers to another message or conversation."),
    CertificateExpired: (BadRequest, "The device certificate is expired or not yet valid."),
    ReplayedRevocation: (BadRequest, "The recall is older than the message."),
}


def unknown_device() -> BadRequest:
    """A wrap to a device that is not registered, or no longer: checked before a send is
    stored (through the directory cache) and again in the transaction that stores it."""
    return BadRequest("A wrap is addressed to a device that is not registered.", "unknown_device")


def from_protocol_error(exc: ProtocolError) -> RelayError:
    """Translate a core refusal into the relay's status, code and sentence."""
    if isinstance(exc, RecallRefused):
        cls: type[RelayError] = RateLimited if isinstance(exc, RecallRateLimited) else RecallDenied
        return cls(refusal_sentence(exc.reason, exc.data), code=exc.reason, data=exc.data)
    for kind in type(exc).__mro__:
        if kind in _SENTENCES:
            cls, sentence = _SENTENCES[kind]
            if exc.reason in REFUSAL_SENTENCES:  # a recall refused before policy: say why
                return cls(refusal_sentence(exc.reason, exc.data), code=exc.reason)
            return cls(sentence, code=exc.expect)
    return BadRequest("The request was refused.", code=exc.expect)
