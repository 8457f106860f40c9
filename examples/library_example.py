"""The core library on its own: encrypt, wrap, open, revoke, verify -- no server.

Run: python examples/library_example.py
"""

from __future__ import annotations

import e2e_recall as er

NOW = 1_790_000_000_000  # ms since the epoch; the library never reads the clock
MINUTE = 60_000


def main() -> None:
    # Alice and Bob: an identity each, and one device for Bob.
    alice = er.SigningKey.generate()
    bob = er.SigningKey.generate()
    bob_device = er.DeviceSecrets.generate()
    bob_cert = er.issue_device_certificate(
        bob,
        bob_device.device_id,
        bob_device.signing_key.public_key,
        bob_device.wrap_key.public_key,
        created_at=NOW,
    )
    alice_id, bob_id = er.fingerprint(alice.public_key), er.fingerprint(bob.public_key)
    print("safety number:", er.safety_number(alice.public_key, bob.public_key))

    # Alice checks Bob's device against his identity, then seals and wraps.
    cert = er.verify_device_certificate(bob_cert.signed, bob.public_key, now=NOW)
    conversation = er.direct_conversation_id(alice_id, bob_id)
    header = er.Header(
        message_id=er.system_random(16),
        conversation_id=conversation,
        sender=alice_id,
        sender_device=er.system_random(16),
        sent_at=NOW,
        recall_sealed_until=NOW + 24 * 60 * MINUTE,
        recall_opened_until=NOW + 10 * MINUTE,
    )
    sealed = er.seal_message(header, er.Body("the launch code is 1234"), alice)
    wrap = er.wrap_message_key(
        sealed.message_key,
        cert.wrap_key,
        message_id=header.message_id,
        conversation_id=conversation,
        device_id=cert.device_id,
    )
    print(f"envelope {len(sealed.envelope)} bytes, wrap {len(wrap)} bytes")

    # Bob verifies the envelope, unwraps the key and reads.
    envelope = er.open_envelope(sealed.envelope, alice.public_key)
    key = er.unwrap_message_key(
        wrap,
        bob_device.wrap_key,
        message_id=header.message_id,
        conversation_id=conversation,
        device_id=bob_device.device_id,
    )
    print("Bob reads:", envelope.decrypt(key).text)

    # Alice recalls; the relay's rule accepts it within the opened window.
    revocation = er.sign_revocation(
        alice, message_id=header.message_id, conversation_id=conversation, issued_at=NOW + MINUTE
    )
    facts = er.MessageFacts(header=header, first_opened_at=NOW + 30_000)
    er.decide_recall(revocation, facts, now=NOW + MINUTE, policy=er.RecallPolicy())

    # Bob's device checks the recall itself, deletes, and signs a receipt.
    checked = er.verify_revocation(revocation.signed, alice.public_key)
    er.check_revocation_matches(checked, envelope.header)
    receipt = er.sign_deletion_receipt(
        bob_device.signing_key,
        user=bob_id,
        device_id=bob_device.device_id,
        message_id=header.message_id,
        conversation_id=conversation,
        opened_at=NOW + 30_000,
        deleted_at=NOW + 2 * MINUTE,
        revocation=checked.digest,
    )
    er.verify_deletion_receipt(
        receipt.signed,
        cert,
        message_id=header.message_id,
        conversation_id=conversation,
        revocation=revocation.digest,
    )

    # The honest report for Bob's device, event by event.
    line = er.DeviceReport(user=bob_id, device_id=bob_device.device_id)
    for event, at in [
        (er.Event.FETCHED, NOW + 10_000),
        (er.Event.KEY_RELEASED, NOW + 30_000),
        (er.Event.RECALLED, NOW + MINUTE),
        (er.Event.DELETION_RECEIPT, NOW + 2 * MINUTE),
    ]:
        line = er.apply_event(line, event, at)
        print(f"{event:>16} -> {er.describe(line)}")

    # Too late: a recall after the opened window is refused, and says why.
    try:
        er.decide_recall(revocation, facts, now=NOW + 11 * MINUTE, policy=er.RecallPolicy())
    except er.RecallRefused as refused:
        print("refused:", er.refusal_sentence(refused.reason, refused.data))


if __name__ == "__main__":
    main()
