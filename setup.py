from setuptools import Extension, setup

# The C runtime (runtime_c/runtime.c) is compiled by cffi into wasm_aot._runtime at install time;
# runtime_c/fastcall.c, the Python <-> wasm call boundary, is a plain CPython extension.
setup(
    cffi_modules=["runtime_c/build.py:ffibuilder"],
    ext_modules=[Extension("wasm_aot._fastcall", ["runtime_c/fastcall.c"], extra_compile_args=["-O2"])],
)
