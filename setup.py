"""The one thing pyproject.toml cannot declare: the C extensions (Maglev fill, ring slots)."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("lb.control._maglev", sources=["lb/control/_maglev.c"]),
    # _ringio hashes flows, reads table layouts and applies the connection table's rules from
    # the data plane's own headers.
    Extension("lb.xdp._ringio", sources=["lb/xdp/_ringio.c"],
              depends=[f"lb/xdp/{h}" for h in ("lb_consts.h", "lb_structs.h", "flowhash.h",
                                               "conntable.h")]),
])
