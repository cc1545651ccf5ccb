"""The veth lab: namespaces, veths, backends and a daemon runner for the demo and the tests.

Not the product: `lb run` never imports this package. It is the test bed the demo, the
benchmarks and the root tests build on (as Katran keeps its tester beside its library).

veth.py builds the topology (VethLab); hosts.py, servers.py, capture.py, namespaces.py,
decap.py and waits.py hold what it is made of and what tests use beside it; daemon.py runs
`lb run` inside it; demo.py is `make demo`.
"""
