"""Regenerate every vector file from one seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..wrapping import WrapSuite
from .fixtures import Context
from .format import VectorFile, dumps
from .gen_acceptance import acceptance_vectors
from .gen_auth import auth_vectors
from .gen_certificate import certificate_vectors
from .gen_codec import codec_vectors, identity_vectors
from .gen_crypto import body_vectors, wrap_vectors
from .gen_devices import linking_vectors, revocation_device_vectors
from .gen_expiry import expiry_vectors
from .gen_files import file_vectors
from .gen_groups import group_vectors
from .gen_messages import envelope_vectors
from .gen_model import key_vectors, report_vectors
from .gen_receipts import deletion_vectors, purge_vectors
from .gen_revocation import revocation_vectors
from .gen_rotation import rotation_vectors

__all__ = ["DEFAULT_SEED", "FILES", "generate", "write"]

DEFAULT_SEED = "e2e-recall test vectors v1"
_XWING_FILE = "wrap_xwing.json"

FILES: dict[str, Callable[[Context, dict[str, Any] | None], VectorFile]] = {
    "wire_codec.json": lambda ctx, _: codec_vectors(ctx),
    "identity.json": lambda ctx, _: identity_vectors(ctx),
    "body_encryption.json": lambda ctx, _: body_vectors(ctx),
    "wrap_x25519.json": lambda ctx, _: wrap_vectors(ctx, WrapSuite.X25519, None),
    _XWING_FILE: lambda ctx, previous: wrap_vectors(ctx, WrapSuite.XWING, previous),
    "envelope.json": lambda ctx, _: envelope_vectors(ctx),
    "revocation.json": lambda ctx, _: revocation_vectors(ctx),
    "recall_acceptance.json": lambda ctx, _: acceptance_vectors(ctx),
    "device_certificate.json": lambda ctx, _: certificate_vectors(ctx),
    "deletion_receipt.json": lambda ctx, _: deletion_vectors(ctx),
    "purge_receipt.json": lambda ctx, _: purge_vectors(ctx),
    "auth.json": lambda ctx, _: auth_vectors(ctx),
    "keys.json": lambda ctx, _: key_vectors(ctx),
    "report.json": lambda ctx, _: report_vectors(ctx),
    # Last, so that its draws from the seed move no earlier file's keys.
    "file_encryption.json": lambda ctx, _: file_vectors(ctx),
    # After it, for the same reason.
    "group_changes.json": lambda ctx, _: group_vectors(ctx),
    # After the groups, for the same reason.
    "linking.json": lambda ctx, _: linking_vectors(ctx),
    "device_revocation.json": lambda ctx, _: revocation_device_vectors(ctx),
    # After it, for the same reason.
    "device_rotation.json": lambda ctx, _: rotation_vectors(ctx),
    # After it, for the same reason.
    "expiry.json": lambda ctx, _: expiry_vectors(ctx),
}


def generate(seed: str = DEFAULT_SEED, known_answers: Path | None = None) -> dict[str, str]:
    """File name -> exact file text.

    The files are built in a fixed order from one seeded random source, and
    everything in them follows from the seed except one thing: the honest
    ML-KEM-768 encapsulations inside the X-Wing wraps flagged
    ``KnownAnswer``, whose randomness ``cryptography`` draws itself (no
    library the project may use takes it as an input).  Those are reused
    from an earlier ``wrap_xwing.json`` in ``known_answers`` when they were
    made to the regenerated keys; without one, they are drawn afresh and only
    their ``wrap`` and ``mlkemSharedSecret`` fields change.
    """
    ctx = Context.from_seed(seed)
    previous = None
    if known_answers is not None and (known_answers / _XWING_FILE).exists():
        previous = json.loads((known_answers / _XWING_FILE).read_text())
    return {name: dumps(build(ctx, previous).to_json(seed)) for name, build in FILES.items()}


def write(out: Path, seed: str = DEFAULT_SEED) -> dict[str, str]:
    files = generate(seed, known_answers=out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    return files
