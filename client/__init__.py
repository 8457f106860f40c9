"""client: the async client library and desktop CLI of e2e-recall (built in a later issue)."""
