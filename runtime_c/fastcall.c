/* wasm_aot._fastcall: the Python <-> wasm boundary for numeric signatures, in C.
 *
 * A call from Python crosses into C once: the arguments are checked and converted here, straight
 * into a slot buffer on the C stack, the GIL is released, and wa_invoke (in wasm_aot._runtime,
 * reached through a pointer handed over at import) enters wasm.  A host function with a numeric
 * signature is called back the same way, without the cffi callback machinery.  Signatures with
 * reference types take the Python path (wasm_aot/loader/externs.py).
 *
 * Kinds: one byte per value, the wasm type's encoding byte (0x7F i32, 0x7E i64, 0x7D f32, 0x7C f64,
 * 0x7B v128: an int of 128 bits, lane 0 in the low bits, both words of its slot).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define K_I32 0x7F
#define K_I64 0x7E
#define K_F32 0x7D
#define K_F64 0x7C
#define K_V128 0x7B
#define MAX_VALUES 16 /* beyond this, the Python path */
#define SLOT 16
#define MAX_FRAMES 64
#define TRAP_HOST 10

typedef uint32_t (*invoke_fn)(void *tramp, void *ctx, void *code, uint8_t *slots, uintptr_t *frames,
                              uint32_t *nframes);
static invoke_fn wa_invoke_p;

static const char *kind_name(int k) {
    switch (k) {
    case K_I32: return "i32";
    case K_I64: return "i64";
    case K_F32: return "f32";
    case K_V128: return "v128";
    default: return "f64";
    }
}

static PyObject *value_class; /* wasm_aot.types.Value, looked up when first needed */
static PyObject *v128_lo, *v128_hi, *sixty_four; /* -2**127, 2**128, 64: made at init */

/* An int known to lie in [-2**127, 2**128) -> its two's complement bits, low word first. */
static int int128_words(PyObject *x, uint64_t *out) {
    out[0] = PyLong_AsUnsignedLongLongMask(x);
    if (out[0] == (uint64_t)-1 && PyErr_Occurred()) return -1;
    PyObject *hi = PyNumber_Rshift(x, sixty_four);
    if (!hi) return -1;
    out[1] = PyLong_AsUnsignedLongLongMask(hi);
    Py_DECREF(hi);
    return out[1] == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

/* A wa.Value given where a number of `kind` goes: its exact bits (1: so NaN payloads cross as they
 * are), not a wa.Value (0), or an error set (-1). Only reached when x is no int or float. */
static int value_bits(PyObject *x, int kind, uint64_t *out) {
    if (!value_class) {
        PyObject *m = PyImport_ImportModule("wasm_aot.types");
        if (!m) return -1;
        value_class = PyObject_GetAttrString(m, "Value");
        Py_DECREF(m);
        if (!value_class) return -1;
    }
    int is = PyObject_IsInstance(x, value_class);
    if (is <= 0) return is;
    PyObject *t = PyObject_GetAttrString(x, "type"), *code = t ? PyObject_GetAttrString(t, "value") : NULL;
    long k = code ? PyLong_AsLong(code) : -1;
    Py_XDECREF(code);
    if (k != kind) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "expected %s, got a wa.Value of %S", kind_name(kind), t);
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(t);
    PyObject *b = PyObject_GetAttrString(x, "_bits");
    if (!b) return -1;
    if (kind == K_V128) {
        int r = int128_words(b, out);
        Py_DECREF(b);
        return r < 0 ? -1 : 1;
    }
    unsigned long long u = PyLong_AsUnsignedLongLong(b);
    Py_DECREF(b);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = u;
    return 1;
}

/* Python value (or wa.Value) -> slot bits, with the checks of values.py (TypeError, ValueError):
 * out[0], and out[1] for a v128. */
static int to_bits(PyObject *x, int kind, uint64_t *out) {
    if (kind == K_V128) {
        if (!PyLong_Check(x) || PyBool_Check(x)) {
            int r = value_bits(x, kind, out);
            if (r) return r > 0 ? 0 : -1;
            PyErr_Format(PyExc_TypeError, "expected an int for v128, got %s", Py_TYPE(x)->tp_name);
            return -1;
        }
        int ge = PyObject_RichCompareBool(x, v128_lo, Py_GE), lt = ge > 0 ? PyObject_RichCompareBool(x, v128_hi, Py_LT) : 0;
        if (ge < 0 || lt < 0) return -1;
        if (!lt) {
            PyErr_Format(PyExc_ValueError, "%S is out of range for v128", x);
            return -1;
        }
        return int128_words(x, out);
    }
    if (kind == K_I32 || kind == K_I64) {
        if (!PyLong_Check(x) || PyBool_Check(x)) {
            int r = value_bits(x, kind, out);
            if (r) return r > 0 ? 0 : -1;
            PyErr_Format(PyExc_TypeError, "expected an int for %s, got %s", kind_name(kind), Py_TYPE(x)->tp_name);
            return -1;
        }
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (kind == K_I32) {
            if (overflow || v < -(1LL << 31) || v >= (1LL << 32)) goto range;
            *out = (uint32_t)v;
        } else if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(x);
            if (u == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); goto range; }
            *out = u;
        } else {
            if (overflow) goto range;
            *out = (uint64_t)v;
        }
        return 0;
    range:
        PyErr_Format(PyExc_ValueError, "%S is out of range for %s", x, kind_name(kind));
        return -1;
    }
    if (!(PyFloat_Check(x) || PyLong_Check(x)) || PyBool_Check(x)) {
        int r = value_bits(x, kind, out);
        if (r) return r > 0 ? 0 : -1;
        PyErr_Format(PyExc_TypeError, "expected a float for %s, got %s", kind_name(kind), Py_TYPE(x)->tp_name);
        return -1;
    }
    double d = PyFloat_AsDouble(x);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    if (kind == K_F32) {
        float f = (float)d; /* rounds; beyond f32's range gives infinity, as values.py does */
        uint32_t b;
        memcpy(&b, &f, 4);
        *out = b;
    } else {
        memcpy(out, &d, 8);
    }
    return 0;
}

/* A slot's bits (slot[1] too for a v128) -> the Python value. */
static PyObject *from_bits(const uint64_t *slot, int kind) {
    uint64_t bits = slot[0];
    switch (kind) {
    case K_V128: {
        PyObject *hi = PyLong_FromUnsignedLongLong(slot[1]), *lo = PyLong_FromUnsignedLongLong(bits);
        PyObject *shifted = hi && lo ? PyNumber_Lshift(hi, sixty_four) : NULL;
        PyObject *r = shifted ? PyNumber_Or(shifted, lo) : NULL;
        Py_XDECREF(hi);
        Py_XDECREF(lo);
        Py_XDECREF(shifted);
        return r;
    }
    case K_I32: return PyLong_FromLong((int32_t)(uint32_t)bits);
    case K_I64: return PyLong_FromLongLong((int64_t)bits);
    case K_F32: {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, 4);
        return PyFloat_FromDouble(f);
    }
    default: {
        double d;
        memcpy(&d, &bits, 8);
        return PyFloat_FromDouble(d);
    }
    }
}

/* ---------- wasm functions called from Python ---------- */

typedef struct {
    PyObject_HEAD
    void *tramp, *ctx, *code;
    PyObject *on_trap; /* on_trap(code, [pc, ...]) raises the wa.Trap */
    int armed;         /* 0: the Python path (self._call_slow) */
    int nparams, nresults, nslots;
    unsigned char params[MAX_VALUES], results[MAX_VALUES];
} Callable;

static PyObject *callable_call(PyObject *o, PyObject *args, PyObject *kw) {
    Callable *self = (Callable *)o;
    if (!self->armed) {
        PyObject *m = PyObject_GetAttrString(o, "_call_slow");
        if (!m) return NULL;
        PyObject *r = PyObject_Call(m, args, kw);
        Py_DECREF(m);
        return r;
    }
    if (kw && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "wasm functions take no keyword arguments");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n != self->nparams) {
        PyObject *t = PyObject_GetAttrString(o, "type");
        if (t) {
            PyErr_Format(PyExc_TypeError, "expected %d argument(s) %S, got %zd", self->nparams, t, n);
            Py_DECREF(t);
        }
        return NULL;
    }
    uint64_t slots[MAX_VALUES * 2];
    for (int i = 0; i < self->nparams; i++) {
        slots[2 * i + 1] = 0;
        if (to_bits(PyTuple_GET_ITEM(args, i), self->params[i], &slots[2 * i]) < 0) return NULL;
    }
    uintptr_t frames[MAX_FRAMES];
    uint32_t nframes = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = wa_invoke_p(self->tramp, self->ctx, self->code, (uint8_t *)slots, frames, &nframes);
    Py_END_ALLOW_THREADS
    if (rc) {
        PyObject *pcs = PyList_New(nframes);
        if (!pcs) return NULL;
        for (uint32_t i = 0; i < nframes; i++) PyList_SET_ITEM(pcs, i, PyLong_FromSize_t(frames[i]));
        PyObject *r = PyObject_CallFunction(self->on_trap, "IN", rc, pcs);
        Py_XDECREF(r);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "on_trap did not raise");
        return NULL;
    }
    if (self->nresults == 0) Py_RETURN_NONE;
    if (self->nresults == 1) return from_bits(&slots[0], self->results[0]);
    PyObject *t = PyTuple_New(self->nresults);
    if (!t) return NULL;
    for (int i = 0; i < self->nresults; i++) {
        PyObject *v = from_bits(&slots[2 * i], self->results[i]);
        if (!v) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static int parse_kinds(PyObject *b, unsigned char *out, int *n) {
    char *s;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(b, &s, &len) < 0) return -1;
    if (len > MAX_VALUES) { *n = -1; return 0; }
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char k = (unsigned char)s[i];
        if (k != K_I32 && k != K_I64 && k != K_F32 && k != K_F64 && k != K_V128) { *n = -1; return 0; }
        out[i] = k;
    }
    *n = (int)len;
    return 0;
}

/* _arm(tramp, ctx, code, params: bytes, results: bytes, on_trap) -> bool: whether the C path applies */
static PyObject *callable_arm(PyObject *o, PyObject *args) {
    Callable *self = (Callable *)o;
    unsigned long long tramp, ctx, code;
    PyObject *params, *results, *on_trap;
    if (!PyArg_ParseTuple(args, "KKKSSO", &tramp, &ctx, &code, &params, &results, &on_trap)) return NULL;
    int np, nr;
    if (parse_kinds(params, self->params, &np) < 0 || parse_kinds(results, self->results, &nr) < 0) return NULL;
    if (np < 0 || nr < 0 || !wa_invoke_p) { self->armed = 0; Py_RETURN_FALSE; }
    self->tramp = (void *)(uintptr_t)tramp;
    self->ctx = (void *)(uintptr_t)ctx;
    self->code = (void *)(uintptr_t)code;
    self->nparams = np;
    self->nresults = nr;
    Py_INCREF(on_trap);
    Py_XSETREF(self->on_trap, on_trap);
    self->armed = 1;
    Py_RETURN_TRUE;
}

static int callable_traverse(PyObject *o, visitproc visit, void *arg) {
    Callable *self = (Callable *)o;
    Py_VISIT(self->on_trap);
    Py_VISIT(Py_TYPE(o));
    return 0;
}

static int callable_clear(PyObject *o) {
    Callable *self = (Callable *)o;
    Py_CLEAR(self->on_trap);
    return 0;
}

static void callable_dealloc(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    callable_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

static PyMethodDef callable_methods[] = {
    {"_arm", callable_arm, METH_VARARGS, "Route calls through the C path (numeric signatures)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot callable_slots[] = {
    {Py_tp_call, callable_call},
    {Py_tp_methods, callable_methods},
    {Py_tp_traverse, callable_traverse},
    {Py_tp_clear, callable_clear},
    {Py_tp_dealloc, callable_dealloc},
    {Py_tp_doc, "Base of wa.Function: calls of numeric signatures go through C."},
    {0, NULL},
};

static PyType_Spec callable_spec = {
    "wasm_aot._fastcall.Callable", sizeof(Callable), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, callable_slots,
};

/* ---------- host functions called from wasm ---------- */

/* One host function binding: the callable, its signature, and the Context it gets first (or None). */
typedef struct {
    PyObject *fn, *ctx;
    int nparams, nresults;
    unsigned char params[MAX_VALUES], results[MAX_VALUES];
} HostEntry;

static __thread PyObject *pending_error; /* the exception of the last failed host call */

static int write_result(PyObject *v, int kind, uint64_t *slot) {
    slot[1] = 0;
    return to_bits(v, kind, &slot[0]);
}

/* The runtime's host_call dispatches here; non-zero means failure, the exception kept in pending_error. */
static int host_dispatch(void *handle, uint8_t *slot_bytes) {
    HostEntry *e = handle;
    uint64_t *slots = (uint64_t *)slot_bytes;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = -1;
    PyObject *argv[MAX_VALUES + 2];
    int off = 1, n = 0; /* argv[0] is left free for PY_VECTORCALL_ARGUMENTS_OFFSET */
    if (e->ctx != Py_None) { argv[off + n++] = e->ctx; Py_INCREF(e->ctx); }
    for (int i = 0; i < e->nparams; i++) {
        PyObject *v = from_bits(&slots[2 * i], e->params[i]);
        if (!v) goto done_args;
        argv[off + n++] = v;
    }
    PyObject *r = PyObject_Vectorcall(e->fn, argv + off, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!r) goto done_args;
    if (e->nresults == 1) {
        rc = write_result(r, e->results[0], slots);
    } else if (e->nresults > 1) {
        PyObject *seq = (PyTuple_Check(r) || PyList_Check(r)) ? PySequence_Fast(r, "") : NULL;
        if (!seq || PySequence_Fast_GET_SIZE(seq) != e->nresults) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "host function must return a tuple of %d values, got %R", e->nresults, r);
        } else {
            rc = 0;
            for (int i = 0; i < e->nresults && rc == 0; i++)
                rc = write_result(PySequence_Fast_GET_ITEM(seq, i), e->results[i], slots + 2 * i);
        }
        Py_XDECREF(seq);
    } else {
        rc = 0;
    }
    Py_DECREF(r);
done_args:
    for (int i = 0; i < n; i++) Py_DECREF(argv[off + i]);
    if (rc != 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value && tb) PyException_SetTraceback(value, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        Py_XSETREF(pending_error, value);
        rc = 1;
    }
    PyGILState_Release(g);
    return rc;
}

static void entry_free(PyObject *capsule) {
    HostEntry *e = PyCapsule_GetPointer(capsule, "wasm_aot.host_entry");
    if (!e) return;
    Py_XDECREF(e->fn);
    Py_XDECREF(e->ctx);
    PyMem_Free(e);
}

/* host_entry(fn, ctx_or_None, params: bytes, results: bytes) -> (capsule, address) or None when
 * the signature needs the Python path. The capsule owns the entry: keep it alive while bound. */
static PyObject *make_host_entry(PyObject *mod, PyObject *args) {
    PyObject *fn, *ctx, *params, *results;
    (void)mod;
    if (!PyArg_ParseTuple(args, "OOSS", &fn, &ctx, &params, &results)) return NULL;
    HostEntry tmp;
    if (parse_kinds(params, tmp.params, &tmp.nparams) < 0 || parse_kinds(results, tmp.results, &tmp.nresults) < 0)
        return NULL;
    if (tmp.nparams < 0 || tmp.nresults < 0) Py_RETURN_NONE;
    HostEntry *e = PyMem_Malloc(sizeof *e);
    if (!e) return PyErr_NoMemory();
    *e = tmp;
    e->fn = fn;
    e->ctx = ctx;
    Py_INCREF(fn);
    Py_INCREF(ctx);
    PyObject *cap = PyCapsule_New(e, "wasm_aot.host_entry", entry_free);
    if (!cap) {
        Py_DECREF(fn);
        Py_DECREF(ctx);
        PyMem_Free(e);
        return NULL;
    }
    return Py_BuildValue("(NK)", cap, (unsigned long long)(uintptr_t)e);
}

static PyObject *take_error(PyObject *mod, PyObject *noargs) {
    (void)mod; (void)noargs;
    PyObject *e = pending_error;
    pending_error = NULL;
    if (!e) Py_RETURN_NONE;
    return e;
}

/* init(wa_invoke address, address of the runtime's `int (*)(void *, uint8_t *)` dispatch cell) */
static PyObject *init(PyObject *mod, PyObject *args) {
    unsigned long long invoke, cell;
    (void)mod;
    if (!PyArg_ParseTuple(args, "KK", &invoke, &cell)) return NULL;
    wa_invoke_p = (invoke_fn)(uintptr_t)invoke;
    if (!sixty_four) {
        v128_lo = PyLong_FromString("-170141183460469231731687303715884105728", NULL, 10);
        v128_hi = PyLong_FromString("340282366920938463463374607431768211456", NULL, 10);
        sixty_four = PyLong_FromLong(64);
        if (!v128_lo || !v128_hi || !sixty_four) return NULL;
    }
    *(int (**)(void *, uint8_t *))(uintptr_t)cell = host_dispatch;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"init", init, METH_VARARGS, NULL},
    {"host_entry", make_host_entry, METH_VARARGS, NULL},
    {"take_error", take_error, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m) {
    PyObject *t = PyType_FromModuleAndSpec(m, &callable_spec, NULL);
    if (!t) return -1;
    if (PyModule_AddObject(m, "Callable", t) < 0) { Py_DECREF(t); return -1; }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "wasm_aot._fastcall", NULL, 0, module_methods, module_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcall(void) { return PyModuleDef_Init(&module_def); }
