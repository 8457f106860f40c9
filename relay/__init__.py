"""relay: the blind relay server of e2e-recall (built in a later issue)."""
