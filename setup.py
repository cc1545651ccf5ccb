"""The one thing pyproject.toml cannot declare: the C extensions (Maglev fill, ring writes)."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("lb.control._maglev", sources=["lb/control/_maglev.c"]),
    Extension("lb.xdp._ringio", sources=["lb/xdp/_ringio.c"]),
])
