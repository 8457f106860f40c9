"""Attachments at the relay: opaque encrypted blobs, their bytes, rules and routes.

``store`` keeps the bytes (a directory by default), ``rules`` the pure
decisions, ``service`` the upload, download and destruction flows, and
``routes`` the HTTP face.  Nothing here can read a blob: it is the file
encrypted under a key only the message's recipients can derive.
"""
