"""The veth lab: namespaces, veths, backends and a daemon runner for the demo and the tests.

Not the product: `lb run` never imports this package. It is the test bed the demo, the
benchmarks and the root tests build on (as Katran keeps its tester beside its library).
"""
