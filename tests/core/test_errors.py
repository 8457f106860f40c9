"""The error hierarchy, and the seeded randomness the other tests rely on."""

from __future__ import annotations

import e2e_recall
from e2e_recall import SeededRandom
from e2e_recall import errors as errors_module
from e2e_recall.errors import (
    DecodeError,
    E2ERecallError,
    ProtocolError,
    UnsupportedVersion,
    UsageError,
)

ERROR_CLASSES = [
    obj
    for obj in vars(errors_module).values()
    if isinstance(obj, type) and issubclass(obj, E2ERecallError)
]


def test_every_error_is_exported_and_has_its_own_code() -> None:
    assert len(ERROR_CLASSES) >= 14
    codes = [cls.expect for cls in ERROR_CLASSES]
    assert len(codes) == len(set(codes))
    for cls in ERROR_CLASSES:
        assert getattr(e2e_recall, cls.__name__) is cls


def test_protocol_and_usage_errors_are_separate() -> None:
    for cls in ERROR_CLASSES:
        if cls in (E2ERecallError, ProtocolError, UsageError):
            continue
        assert issubclass(cls, ProtocolError) != issubclass(cls, UsageError), cls
    assert issubclass(UnsupportedVersion, DecodeError)
    assert not issubclass(UsageError, ProtocolError)


def test_error_fields_and_sentence() -> None:
    error = DecodeError("trailing_bytes", "data continues", {"offset": 3})
    assert error.reason == "trailing_bytes"
    assert error.detail == "data continues"
    assert error.data == {"offset": 3}
    assert str(error) == "trailing_bytes: data continues"
    assert error.sentence == "The data is not a well-formed, canonical e2e-recall structure."
    assert str(DecodeError("truncated")) == "truncated"
    assert DecodeError("truncated").data == {}


def test_error_data_is_a_copy() -> None:
    facts = {"limit": 5}
    error = ProtocolError("x", None, facts)
    facts["limit"] = 6
    assert error.data == {"limit": 5}


def test_every_error_has_a_sentence() -> None:
    for cls in ERROR_CLASSES:
        sentence = cls("r").sentence
        assert sentence != "r", cls
        assert sentence.endswith("."), cls


def test_seeded_random_is_a_reproducible_stream() -> None:
    a, b = SeededRandom(b"seed"), SeededRandom(b"seed")
    first = a(16) + a(16)
    assert first == b(32)
    assert SeededRandom(b"seed")(32) == first
    assert SeededRandom(b"other")(32) != first
    assert len(SeededRandom(b"")(1000)) == 1000
    assert len(set(SeededRandom(b"x")(4096))) > 200  # not a constant or short cycle
