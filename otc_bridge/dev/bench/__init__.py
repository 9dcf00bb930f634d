"""The benchmark of ``otc-bridge serve`` (``scripts/bench``; docs/performance.md).

It starts a dev node (``otc-bridge devnode``) and the bridge as production serves it
(``otc-bridge serve``: gunicorn and the buffering worker), each as a separate process, with a
thread confirming the node's pending pool like the node operator's cron, then measures:

* lifecycles (sell order created, matched, confirmed; completed by the reconciler) at
  several client counts: req/s and latency per endpoint, lifecycles/s, the bridge's and the
  node's CPU and the node calls (by route) per completed lifecycle;
* reads at 16 keep-alive clients over a seeded book, and the same clients on the trivial
  ``GET /healthz`` of the same server (the ceiling);
* mixed lifecycles and reads;
* one reconcile pass over 1,000 open orders (the escrow watch).

Then it checks that every order ended, that money was conserved on the node, and that the
serve log is clean. :mod:`.main` has the options; :mod:`.workloads` the runs; :mod:`.drivers`
the clients; :mod:`.stack` the servers and their measurements. Importing does nothing.
"""
