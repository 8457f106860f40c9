"""Protocol constants: the version, sizes, and every domain-separation string.

Each signature, hash, key derivation and HPKE context in the protocol begins with its own
label from this module, so a signature or digest made for one purpose can
never be presented as another.  ``docs/protocol.md`` lists the same bytes
(``tests/test_docs.py`` checks that it lists every one), and
``tests/core/test_signing.py`` checks that they are all distinct and that none
is a prefix of another.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1

ID_LEN: Final = 16  # message, conversation and device ids
FINGERPRINT_LEN: Final = 32  # user ids (identity key fingerprints), digests
KEY_LEN: Final = 32  # per-message keys, Ed25519 and X25519 keys
NONCE_LEN: Final = 24  # XChaCha20-Poly1305 nonces
TAG_LEN: Final = 16  # Poly1305 tags
SIGNATURE_LEN: Final = 64  # Ed25519 signatures
MAX_CLOCK_SKEW_MS: Final = 5 * 60 * 1000  # tolerated difference between two parties' clocks

# Attachments (docs/protocol.md section 7.5).
CHUNK_LEN: Final = 65536  # plaintext bytes in every secretstream chunk but the last
MAX_FILES: Final = 16  # files one body may list
MAX_FILE_SIZE: Final = 2**40  # protocol ceiling on one file; a relay's own limit is lower

# Linking devices (docs/protocol.md section 17).
LINK_SECRET_LEN: Final = 16  # the one-time secret behind a link code (128 bits)

# Groups (docs/protocol.md section "Groups").
MAX_GROUP_MEMBERS: Final = 1024  # members of one group, and user ids one change may name

# Signature contexts: signed bytes are LABEL || payload.
SIG_ENVELOPE: Final = b"e2e-recall/v1/sig/envelope\x00"
SIG_REVOCATION: Final = b"e2e-recall/v1/sig/revocation\x00"
SIG_DEVICE_CERTIFICATE: Final = b"e2e-recall/v1/sig/device-certificate\x00"
SIG_DELETION_RECEIPT: Final = b"e2e-recall/v1/sig/deletion-receipt\x00"
SIG_PURGE_RECEIPT: Final = b"e2e-recall/v1/sig/purge-receipt\x00"
SIG_REGISTRATION: Final = b"e2e-recall/v1/sig/registration\x00"
SIG_LOGIN: Final = b"e2e-recall/v1/sig/login\x00"
SIG_GROUP_CHANGE: Final = b"e2e-recall/v1/sig/group-change\x00"
SIG_DEVICE_APPROVAL: Final = b"e2e-recall/v1/sig/device-approval\x00"
SIG_DEVICE_REVOCATION: Final = b"e2e-recall/v1/sig/device-revocation\x00"
SIG_LINK_PROOF: Final = b"e2e-recall/v1/sig/link-proof\x00"

# Hash contexts: digest = SHA-256(LABEL || input).
HASH_FINGERPRINT: Final = b"e2e-recall/v1/hash/fingerprint\x00"
HASH_SAFETY_NUMBER: Final = b"e2e-recall/v1/hash/safety-number\x00"
HASH_CIPHERTEXT: Final = b"e2e-recall/v1/hash/ciphertext\x00"
HASH_WRAP_KEY_ID: Final = b"e2e-recall/v1/hash/wrap-key-id\x00"
HASH_REVOCATION: Final = b"e2e-recall/v1/hash/revocation\x00"
HASH_DIRECT_CONVERSATION: Final = b"e2e-recall/v1/hash/direct-conversation\x00"
HASH_CERTIFICATE: Final = b"e2e-recall/v1/hash/certificate\x00"
HASH_BLOB: Final = b"e2e-recall/v1/hash/blob\x00"
HASH_GROUP_CHANGE: Final = b"e2e-recall/v1/hash/group-change\x00"
HASH_GROUP_CONVERSATION: Final = b"e2e-recall/v1/hash/group-conversation\x00"

# HKDF info prefixes: info = LABEL || context.
KDF_FILE_KEY: Final = b"e2e-recall/v1/kdf/file-key\x00"
KDF_LINK_ID: Final = b"e2e-recall/v1/kdf/link-id\x00"
KDF_LINK_KEY: Final = b"e2e-recall/v1/kdf/link-key\x00"

# AEAD associated-data prefixes: aad = LABEL || context.
AEAD_LINK_REQUEST: Final = b"e2e-recall/v1/aead/link-request\x00"
AEAD_LINK_ANSWER: Final = b"e2e-recall/v1/aead/link-answer\x00"

# HPKE info prefix for wrapping a per-message key to one device.
HPKE_WRAP_INFO: Final = b"e2e-recall/v1/hpke/wrap\x00"

SIGNATURE_LABELS: Final = (
    SIG_ENVELOPE,
    SIG_REVOCATION,
    SIG_DEVICE_CERTIFICATE,
    SIG_DELETION_RECEIPT,
    SIG_PURGE_RECEIPT,
    SIG_REGISTRATION,
    SIG_LOGIN,
    SIG_GROUP_CHANGE,
    SIG_DEVICE_APPROVAL,
    SIG_DEVICE_REVOCATION,
    SIG_LINK_PROOF,
)
HASH_LABELS: Final = (
    HASH_FINGERPRINT,
    HASH_SAFETY_NUMBER,
    HASH_CIPHERTEXT,
    HASH_WRAP_KEY_ID,
    HASH_REVOCATION,
    HASH_DIRECT_CONVERSATION,
    HASH_CERTIFICATE,
    HASH_BLOB,
    HASH_GROUP_CHANGE,
    HASH_GROUP_CONVERSATION,
)
KDF_LABELS: Final = (KDF_FILE_KEY, KDF_LINK_ID, KDF_LINK_KEY)
AEAD_LABELS: Final = (AEAD_LINK_REQUEST, AEAD_LINK_ANSWER)
ALL_LABELS: Final = (
    *SIGNATURE_LABELS,
    *HASH_LABELS,
    *KDF_LABELS,
    *AEAD_LABELS,
    HPKE_WRAP_INFO,
)
