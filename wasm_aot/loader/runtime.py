"""The compiled C runtime (cffi), its fault handlers, and the host-call bridge.

Host functions are kept in a registry keyed by a small integer handle stored in their
wa_hostfunc; the C runtime calls back into Python through `wa_py_host_call`. Any exception
there is recorded per thread and reported as a non-zero return, and only then does C raise
the HOST trap: nothing longjmps over a Python frame.
"""
from __future__ import annotations

import faulthandler
import itertools
import threading
from typing import Any, Callable

from .. import _fastcall
from .._runtime import ffi, lib

if lib.wa_install_handlers() != 0:  # after faulthandler (if any): ours chain to it
    raise OSError("wasm-aot: cannot install the fault handlers")


def _keep_handlers_first(enable: Callable[..., None]) -> Callable[..., None]:
    """faulthandler.enable() after this import would put its handler before ours, and a wasm trap
    would become a fatal error: ours go back on top (chaining to it) after each enable()."""
    def enable_then_reassert(*args: Any, **kwargs: Any) -> None:
        enable(*args, **kwargs)
        lib.wa_reassert_handlers()
    enable_then_reassert.__doc__ = enable.__doc__
    enable_then_reassert.__wrapped__ = enable  # type: ignore[attr-defined]
    return enable_then_reassert


faulthandler.enable = _keep_handlers_first(faulthandler.enable)

# cffi parses a C type's name and lays a struct out on its first use (~5 to 40 us each): done here for
# the types of the load, instantiate and call paths, so that a service's first load does not pay it
for _name in ("char *", "char[]", "uint8_t *", "uint8_t[]", "uint8_t[16]", "uint8_t *[]", "uint32_t *", "uint32_t[]",
              "uint64_t *", "uint8_t **", "uintptr_t", "uintptr_t[]", "uintptr_t[64]", "void *", "void **", "void **[]",
              "wa_ctx *", "wa_funcref *", "wa_funcref[]", "wa_hostfunc *", "wa_image_status *", "wa_module_desc *",
              "wa_table *[]", "wa_memory *", "wa_table *"):
    _t = ffi.typeof(_name)
    if _t.kind == "pointer" and _t.item.kind == "struct":
        ffi.sizeof(_t.item)
del _name, _t

RT_PTR = lib.wa_rt_ptr()
HOST_CALL_PTR = lib.wa_host_call_ptr()
STACK_LIMIT_TLS = lib.wa_stack_limit_tls_offset()
HOST_CALL_FAST_PTR = lib.wa_host_call_fast_ptr()
_fastcall.init(int(ffi.cast("uintptr_t", lib.wa_invoke_ptr())), int(ffi.cast("uintptr_t", lib.wa_host_dispatch_cell())))

_host_fns: dict[int, Callable[[Any], None]] = {}
_handles = itertools.count(1)
_tls = threading.local()


def register_host(fn: Callable[[Any], None]) -> int:
    """fn(slots) reads its arguments from and writes its results to the slots buffer."""
    h = next(_handles)
    _host_fns[h] = fn
    return h


def unregister_host(h: int) -> None:
    _host_fns.pop(h, None)


def take_host_error() -> BaseException | None:
    """The exception of this thread's last failed host call (from either host-call path)."""
    err = getattr(_tls, "error", None)
    _tls.error = None
    fast = _fastcall.take_error()
    return fast if fast is not None else err


@ffi.def_extern()
def wa_py_host_call(handle, slots):  # noqa: ANN001 (cffi callback)
    try:
        _host_fns[int(ffi.cast("uintptr_t", handle))](slots)
        return 0
    except BaseException as e:  # noqa: BLE001 - every failure becomes a HOST trap, with its cause
        _tls.error = e
        return 1
