"""Groups at the relay: signed membership changes, their chain and fan-out, who is in a group.

``rules`` holds the pure decisions (around the core's membership rules),
``service`` the flows: verify a change, store it with its events, serve the
chain, and the membership a send to the group is checked against.
"""
