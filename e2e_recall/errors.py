"""The one exception hierarchy of the core library.

Every failure to decode, verify, decrypt or accept something that came from
outside reaches the caller as a subclass of :class:`ProtocolError`, never as a
raw ``msgpack``, ``KeyError``, ``TypeError`` or ``ValueError``.  Local misuse
(a wrong argument from the program using the library) is :class:`UsageError`.

Each class carries:

* ``expect`` -- the code used in ``tests/vectors`` (``decode_failure``,
  ``bad_signature`` ...), so a vector names the class it must raise;
* ``reason`` -- a finer machine-readable code (``trailing_bytes``,
  ``small_order_key`` ...), for logs, relay error bodies and vectors;
* a docstring that is the sentence a user may be shown.

Cryptographic failures are deliberately coarse: an AEAD failure never says
whether the tag, the nonce or the associated data was wrong, so no caller can
build an oracle from the message.
"""

from __future__ import annotations

__all__ = [
    "AlreadyAdmin",
    "AlreadyMember",
    "AuthenticationFailure",
    "BadCode",
    "BrokenChain",
    "CertificateExpired",
    "DecodeError",
    "E2ERecallError",
    "GroupChangeRefused",
    "ImpossibleTransition",
    "InvalidKey",
    "NotAMember",
    "NotAuthorised",
    "ProtocolError",
    "RecallRateLimited",
    "RecallRefused",
    "RecallWindowClosed",
    "ReplayedRevocation",
    "RotationRefused",
    "SignatureInvalid",
    "StaleChange",
    "TooManyMembers",
    "UnsupportedVersion",
    "UsageError",
    "WrongContext",
    "WrongSigner",
]


class E2ERecallError(Exception):
    """Something went wrong in e2e-recall."""

    expect: str = "error"

    def __init__(
        self, reason: str, detail: str | None = None, data: dict[str, int] | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.data: dict[str, int] = dict(data or {})
        super().__init__(f"{reason}: {detail}" if detail else reason)

    @property
    def sentence(self) -> str:
        """The human sentence for this error (its class docstring's first line)."""
        doc = (type(self).__doc__ or "").strip().splitlines()
        return doc[0] if doc else self.reason


class UsageError(E2ERecallError):
    """The library was called in a way it does not support."""

    expect = "usage_error"


class ProtocolError(E2ERecallError):
    """Data from another party was refused."""

    expect = "protocol_error"


class DecodeError(ProtocolError):
    """The data is not a well-formed, canonical e2e-recall structure."""

    expect = "decode_failure"


class UnsupportedVersion(DecodeError):
    """The data uses a protocol version this software does not speak."""

    expect = "unsupported_version"


class InvalidKey(ProtocolError):
    """A public key or key-agreement result is unusable (weak, malformed or zero)."""

    expect = "invalid_key"


class SignatureInvalid(ProtocolError):
    """The signature does not verify under the expected key and purpose."""

    expect = "bad_signature"


class WrongSigner(ProtocolError):
    """The signature is valid but was made by someone who may not sign this."""

    expect = "wrong_signer"


class WrongContext(ProtocolError):
    """The object is authentic but belongs to another message, conversation or device."""

    expect = "wrong_context"


class AuthenticationFailure(ProtocolError):
    """Decryption failed: the data was altered or is not meant for this key."""

    expect = "auth_failure"


class CertificateExpired(ProtocolError):
    """The device certificate has expired or is not yet valid."""

    expect = "expired"


class ReplayedRevocation(ProtocolError):
    """The revocation cannot belong to this message: it predates it or is replayed."""

    expect = "replay"


class ImpossibleTransition(ProtocolError):
    """That cannot happen to this message now (for example a key released after a recall)."""

    expect = "impossible_transition"


class RecallRefused(ProtocolError):
    """The recall was refused."""

    expect = "refused"


class RecallWindowClosed(RecallRefused):
    """The recall window for this message has closed."""

    expect = "window_closed"


class RecallRateLimited(RecallRefused):
    """Too many recalls in this conversation today."""

    expect = "rate_limited"


class GroupChangeRefused(ProtocolError):
    """The group change was refused."""

    expect = "group_change_refused"


class NotAuthorised(GroupChangeRefused):
    """The member who signed this group change may not make it."""

    expect = "not_authorised"


class StaleChange(GroupChangeRefused):
    """The group change is not newer than the group's current state."""

    expect = "stale_change"


class BrokenChain(GroupChangeRefused):
    """The group change does not follow the group's latest change."""

    expect = "broken_chain"


class NotAMember(GroupChangeRefused):
    """Someone the group change names is not a member of the group."""

    expect = "not_a_member"


class AlreadyMember(GroupChangeRefused):
    """Someone the group change adds is already a member of the group."""

    expect = "already_member"


class AlreadyAdmin(GroupChangeRefused):
    """Someone the group change promotes is already an admin of the group."""

    expect = "already_admin"


class TooManyMembers(GroupChangeRefused):
    """The group would have more members than a group may have."""

    expect = "too_many_members"


class BadCode(ProtocolError):
    """That is not a valid link code: check it for a typo and type it again."""

    expect = "bad_code"


class RotationRefused(ProtocolError):
    """The new device certificate cannot replace the current one (protocol section 5.1)."""

    expect = "rotation_refused"
