"""The client's one exception hierarchy.

Every failure a person can meet is a :class:`ClientError` with a stable
``code`` (for ``--json`` and scripts), a sentence written for people, and the
CLI exit code it maps to.  Nothing below this layer is allowed to reach the
terminal as a traceback.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "ContactError",
    "DeviceRevoked",
    "GroupChainInvalid",
    "GroupRefused",
    "IdentityChanged",
    "KeystoreError",
    "MessageExpired",
    "NotFound",
    "NotRegistered",
    "RecallNotAccepted",
    "RelayKeyChanged",
    "RelayRefused",
    "RelayUnreachable",
    "SessionReplaced",
    "UsageProblem",
    "WrongPassphrase",
]


class ClientError(Exception):
    """Base of every client error: ``code`` for machines, ``sentence`` for people."""

    exit_code = 1

    def __init__(self, sentence: str, code: str = "failed") -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.code = code


class UsageProblem(ClientError):
    """The request itself is wrong (bad argument, bad id, nothing to do)."""

    exit_code = 2


class NotFound(UsageProblem):
    """No such message, contact or profile."""


class MessageExpired(ClientError):
    """The message's timer ran out: it is deleted here and cannot be opened."""


class KeystoreError(ClientError):
    """The keystore is missing, damaged or already exists."""

    exit_code = 4


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the keystore."""


class NotRegistered(ClientError):
    """The profile has no relay yet: ``e2e-recall register URL`` first."""

    exit_code = 2


class RelayUnreachable(ClientError):
    """The relay could not be reached; anything queued stays queued."""

    exit_code = 3


class RelayRefused(ClientError):
    """The relay answered with an error: its code and its sentence."""

    def __init__(self, sentence: str, code: str, status: int, data: dict[str, object]) -> None:
        super().__init__(sentence, code)
        self.status = status
        self.data = data


class RecallNotAccepted(RelayRefused):
    """The relay refused a recall; ``sentence`` says why."""


class RelayKeyChanged(ClientError):
    """The relay presents a different key from the one pinned at registration."""

    exit_code = 5


class ContactError(UsageProblem):
    """A contact name or handle that cannot be used as asked."""


class IdentityChanged(ClientError):
    """A contact's identity key differs from the pinned one; sending is refused."""

    exit_code = 5


class SessionReplaced(ClientError):
    """Another session of this device took over the live connection (WebSocket close 4409).

    The relay keeps one live connection per device and closes the older one
    when a newer one arrives; reconnecting would only push the newer one off
    in turn, so the older session stops instead.
    """

    exit_code = 6


class GroupRefused(ClientError):
    """A group change that may not be made (not an admin, not a member, refused by the relay)."""


class GroupChainInvalid(ClientError):
    """A group's chain of changes did not verify; nothing of it was applied."""

    exit_code = 5


class DeviceRevoked(ClientError):
    """This device was revoked by another device of the same user; it cannot log in again."""

    exit_code = 7
