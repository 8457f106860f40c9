"""``e2e-recall-relay bench``: what a relay sustains, measured the way operators compare servers.

The bench starts a relay process (or targets one by ``--url``), registers
users and devices through the public API with proof of possession, holds
every device's WebSocket open and drives a mix of sends, opens and recalls,
then prints throughput, latency percentiles, recall propagation, errors and
the relay's CPU and memory.  ``--baseline`` also measures a bare aiohttp
endpoint and a bare WebSocket echo on the same machine in the same run, so
the relay's figures can be read as a share of that ceiling whatever the
machine's speed.

It speaks the protocol with its own small client (:mod:`.protocol`), built
only on ``e2e_recall`` and aiohttp: the relay package never imports the
client package or the tests.

Modules, one job each:

* :mod:`.options` -- the command line, checked into :class:`~.options.BenchOptions`;
* :mod:`.protocol` -- register, log in, seal, send, fetch, open, recall, receipts;
* :mod:`.transport` -- how a send reaches the relay (``http`` now; ``ws`` can be added);
* :mod:`.schedule` -- the mix and the pace of operations;
* :mod:`.workload` and :mod:`.listener` -- one load generator: its operations and its sockets;
* :mod:`.baseline_server` and :mod:`.baseline_load` -- the bare aiohttp ceiling;
* :mod:`.worker` -- a load generator process and what it sends back;
* :mod:`.processes` -- the relay and baseline server processes, and their CPU and RSS;
* :mod:`.samples` -- latency samples and percentiles;
* :mod:`.runner` -- one bench run from start to figures;
* :mod:`.progress`, :mod:`.report` and :mod:`.plot` -- what the operator sees.
"""
