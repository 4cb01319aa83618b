from setuptools import setup

# The C runtime (runtime_c/) is compiled by cffi into wasm_aot._runtime at install time.
setup(cffi_modules=["runtime_c/build.py:ffibuilder"])
