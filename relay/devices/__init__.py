"""Devices at the relay: link slots for a new device, listing, and revoking a device.

``service`` holds the rules (who may open, answer or read a slot; who may
revoke which device), ``routes`` the HTTP face.  The relay reads nothing of
what passes through a slot: both messages are sealed under a key derived
from a code it never sees (docs/protocol.md section 17).
"""
