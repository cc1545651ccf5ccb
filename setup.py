"""The one thing pyproject.toml cannot declare: the C extension holding the Maglev fill loop."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lb.control._maglev", sources=["lb/control/_maglev.c"])])
