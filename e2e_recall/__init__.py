"""e2e_recall: the sans-IO core of e2e-recall.

Crypto, wire format, recall rules, the report model and test vectors.  No
sockets, no event loop, no database, no clock: time is passed in as ``now``
(milliseconds since the Unix epoch) and randomness as ``rng``.
See docs/protocol.md for the specification this package implements.
"""

from __future__ import annotations

from .attachment import (
    CHUNK_LEN,
    MAX_FILE_SIZE,
    MAX_FILES,
    FileDecryptor,
    FileDescriptor,
    FileEncryptor,
    blob_digest,
    blob_hasher,
    blob_length,
    file_key,
    sanitise_file_name,
)
from .body import Body
from .device import (
    DeviceCertificate,
    DeviceSecrets,
    issue_device_certificate,
    verify_device_certificate,
)
from .domains import PROTOCOL_VERSION
from .envelope import (
    Header,
    MessageKind,
    SealedMessage,
    VerifiedEnvelope,
    open_envelope,
    seal_message,
)
from .errors import (
    AuthenticationFailure,
    CertificateExpired,
    DecodeError,
    E2ERecallError,
    ImpossibleTransition,
    InvalidKey,
    ProtocolError,
    RecallRateLimited,
    RecallRefused,
    RecallWindowClosed,
    ReplayedRevocation,
    SignatureInvalid,
    UnsupportedVersion,
    UsageError,
    WrongContext,
    WrongSigner,
)
from .identity import direct_conversation_id, fingerprint, format_fingerprint, safety_number
from .randomness import Rng, SeededRandom, system_random
from .recall_rules import (
    MessageFacts,
    RecallDecision,
    RecallPolicy,
    decide_recall,
    recall_deadline,
    refusal_sentence,
)
from .receipts import (
    DeletionCause,
    DeletionReceipt,
    PurgedDevice,
    PurgeReceipt,
    sign_deletion_receipt,
    sign_purge_receipt,
    verify_deletion_receipt,
    verify_purge_receipt,
)
from .report import (
    Attester,
    DeviceReport,
    DeviceState,
    Event,
    apply_event,
    describe,
    next_state,
    summarize,
)
from .revocation import Revocation, check_revocation_matches, sign_revocation, verify_revocation
from .signing import SigningKey, VerifyKey
from .wrapping import (
    WrapPrivateKey,
    WrapPublicKey,
    WrapSuite,
    unwrap_message_key,
    wrap_message_key,
)

__all__ = [
    "CHUNK_LEN",
    "MAX_FILES",
    "MAX_FILE_SIZE",
    "PROTOCOL_VERSION",
    "Attester",
    "AuthenticationFailure",
    "Body",
    "CertificateExpired",
    "DecodeError",
    "DeletionCause",
    "DeletionReceipt",
    "DeviceCertificate",
    "DeviceReport",
    "DeviceSecrets",
    "DeviceState",
    "E2ERecallError",
    "Event",
    "FileDecryptor",
    "FileDescriptor",
    "FileEncryptor",
    "Header",
    "ImpossibleTransition",
    "InvalidKey",
    "MessageFacts",
    "MessageKind",
    "ProtocolError",
    "PurgeReceipt",
    "PurgedDevice",
    "RecallDecision",
    "RecallPolicy",
    "RecallRateLimited",
    "RecallRefused",
    "RecallWindowClosed",
    "ReplayedRevocation",
    "Revocation",
    "Rng",
    "SealedMessage",
    "SeededRandom",
    "SignatureInvalid",
    "SigningKey",
    "UnsupportedVersion",
    "UsageError",
    "VerifiedEnvelope",
    "VerifyKey",
    "WrapPrivateKey",
    "WrapPublicKey",
    "WrapSuite",
    "WrongContext",
    "WrongSigner",
    "apply_event",
    "blob_digest",
    "blob_hasher",
    "blob_length",
    "check_revocation_matches",
    "decide_recall",
    "describe",
    "direct_conversation_id",
    "file_key",
    "fingerprint",
    "format_fingerprint",
    "issue_device_certificate",
    "next_state",
    "open_envelope",
    "recall_deadline",
    "refusal_sentence",
    "safety_number",
    "sanitise_file_name",
    "seal_message",
    "sign_deletion_receipt",
    "sign_purge_receipt",
    "sign_revocation",
    "summarize",
    "system_random",
    "unwrap_message_key",
    "verify_deletion_receipt",
    "verify_device_certificate",
    "verify_purge_receipt",
    "verify_revocation",
    "wrap_message_key",
]
