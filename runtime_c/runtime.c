/* wasm-aot C runtime: memories, tables, entry into wasm and trap delivery.
 *
 * The structure declarations (wa_ctx, wa_memory, ...) come from wasm_aot/abi.py, pasted in
 * front of this file by build.py, so generated code, this file and the loader share one layout.
 *
 * Traps: wa_invoke() sigsetjmps before entering wasm; a trap (an explicit check in generated
 * code calling rt->trap, a host function's failure, or a fault that the signal handler claims)
 * siglongjmps back to it.  Nothing longjmps over a Python frame: a host function's exception is
 * turned into a return code by the cffi callback, and only then does C raise the trap.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define WA_TRAP_UNREACHABLE 1
#define WA_TRAP_MEMORY_OOB 5
#define WA_TRAP_STACK_OVERFLOW 9
#define WA_TRAP_HOST 10
#define WA_TRAP_TABLE_OOB 11
#define WA_TRAP_INTERRUPTED 12
/* Interrupting a thread that runs wasm (wa_interrupt) uses this real-time signal. */
#define WA_SIG_INTERRUPT (SIGRTMIN + 6)
#define WA_PAGE 65536ull
#define WA_MAX_FRAMES 64

/* Room left below the wasm stack limit for the runtime, a host call back into Python and the
 * signal handler. */
#define WA_STACK_MARGIN (256 * 1024)
#define WA_MAX_STACK ((uintptr_t)64 << 20)

static int wa_py_host_call(void *handle, uint8_t *slots); /* defined by cffi (extern "Python") */

/* ---------- per-thread entry state ---------- */

typedef struct wa_entry {
    sigjmp_buf jb;
    struct wa_entry *prev;
    uint32_t code;
    uint32_t nframes;
    uintptr_t frames[WA_MAX_FRAMES];
} wa_entry;

static __thread wa_entry *cur_entry;
/* An interrupt that arrived while this thread was in the runtime or in a host function: it traps
 * when control comes back from a host call, or is dropped when the calls it was for are over (a
 * deadline's are those deeper than pending_above: see on_interrupt). */
static __thread volatile sig_atomic_t interrupt_pending, pending_above;
/* on_interrupt left by siglongjmp, its signal still blocked (see wa_install_handlers) */
static __thread volatile sig_atomic_t interrupt_blocked;
static __thread int entry_depth; /* wasm calls in progress on this thread (wa_invoke frames) */
static __thread uintptr_t thread_stack_low, thread_stack_high;
/* The lowest stack address wasm may use on this thread. Generated code reads it at a fixed offset
 * from the thread pointer (ctx->stack_limit_tls), hence initial-exec: static TLS, same offset in
 * every thread. */
static __thread uintptr_t thread_limit __attribute__((tls_model("initial-exec")));
static __thread int thread_altstack_done;

/* ---------- code ranges: the signal handler claims only faults inside them ---------- */

#define WA_MAX_RANGES 65536 /* live mapped artifacts; 1 MiB of address space, touched as used */
/* A slot with lo == hi == 0 is free. The signal handler reads without the lock: slots are only
 * ever emptied or filled whole (hi last when filling, first when emptying), never moved. */
static uintptr_t range_lo[WA_MAX_RANGES], range_hi[WA_MAX_RANGES];
static volatile int nranges; /* slots in use or freed, [0, nranges) */
static pthread_mutex_t range_lock = PTHREAD_MUTEX_INITIALIZER;

static int pc_in_wasm(uintptr_t pc) {
    int n = __atomic_load_n(&nranges, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (pc >= __atomic_load_n(&range_lo[i], __ATOMIC_RELAXED) &&
            pc < __atomic_load_n(&range_hi[i], __ATOMIC_ACQUIRE)) return 1;
    return 0;
}

/* Registers [lo, hi) as wasm code (an artifact mapped by wa_map_image, see image.c). */
static int add_code_range(uintptr_t lo, uintptr_t hi) {
    int rc = -1, slot = -1;
    pthread_mutex_lock(&range_lock);
    for (int i = 0; i < nranges && slot < 0; i++)
        if (!range_hi[i]) slot = i;
    if (slot < 0 && nranges < WA_MAX_RANGES) slot = nranges;
    if (slot >= 0) {
        __atomic_store_n(&range_lo[slot], lo, __ATOMIC_RELAXED);
        __atomic_store_n(&range_hi[slot], hi, __ATOMIC_RELEASE);
        if (slot == nranges) __atomic_store_n(&nranges, nranges + 1, __ATOMIC_RELEASE);
        rc = 0;
    }
    pthread_mutex_unlock(&range_lock);
    return rc;
}

/* Forgets the code ranges inside [lo, hi) (an artifact being unmapped). */
static void remove_code_ranges(uintptr_t lo, uintptr_t hi) {
    pthread_mutex_lock(&range_lock);
    for (int i = 0; i < nranges; i++)
        if (range_lo[i] >= lo && range_hi[i] <= hi && range_hi[i]) {
            __atomic_store_n(&range_hi[i], 0, __ATOMIC_RELEASE);
            __atomic_store_n(&range_lo[i], 0, __ATOMIC_RELAXED);
        }
    pthread_mutex_unlock(&range_lock);
}

/* Number of live code ranges (for tests: mapped artifacts are unmapped when no longer used). */
int wa_code_ranges(void) {
    int n = 0;
    pthread_mutex_lock(&range_lock);
    for (int i = 0; i < nranges; i++) n += range_hi[i] != 0;
    pthread_mutex_unlock(&range_lock);
    return n;
}

/* ---------- traps ---------- */

/* Walks the frame-pointer chain from `fp`, keeping the return addresses that are in wasm code,
 * up to the entry's own frame. Generated code keeps frame pointers for this. */
static void record_frames(wa_entry *e, uintptr_t pc, uintptr_t fp) {
    uint32_t n = 0;
    if (pc && pc_in_wasm(pc)) e->frames[n++] = pc;
    uintptr_t stop = (uintptr_t)e;
    while (n < WA_MAX_FRAMES && fp && !(fp & 7) && fp >= thread_stack_low && fp < stop) {
        uintptr_t ret = ((uintptr_t *)fp)[1];
        uintptr_t next = ((uintptr_t *)fp)[0];
        /* ret - 1: a call that ends a function at the end of a code segment returns just past it */
        if (pc_in_wasm(ret - 1)) e->frames[n++] = ret;
        if (next <= fp) break;
        fp = next;
    }
    e->nframes = n;
}

static void __attribute__((noreturn)) raise_trap(uint32_t code, uintptr_t pc, uintptr_t fp) {
    wa_entry *e = cur_entry;
    if (!e) abort(); /* a trap with no wasm entry on this thread: a runtime bug */
    e->code = code;
    record_frames(e, pc, fp);
    siglongjmp(e->jb, 1);
}

static void __attribute__((noreturn, noinline)) rt_trap(wa_ctx *ctx, uint32_t code) {
    (void)ctx;
    raise_trap(code, 0, (uintptr_t)__builtin_frame_address(0));
}

static struct sigaction prev_action[32];
static int handlers_installed;

static __thread int chaining; /* a fault this thread is passing on to the previous handler */

static void chain(int sig, siginfo_t *si, void *uctx) {
    struct sigaction *p = &prev_action[sig];
    if (chaining) {
        /* the previous handler sent the signal back here (faulthandler restores the handler it
         * replaced, ours, and raises again): the default action, once the fault recurs */
        signal(sig, SIG_DFL);
        return;
    }
    int info = p->sa_flags & SA_SIGINFO;
    if (!info && p->sa_handler == SIG_IGN)
        return;
    if (info ? p->sa_sigaction != NULL : p->sa_handler != SIG_DFL && p->sa_handler != NULL) {
        chaining = 1;
        if (info)
            p->sa_sigaction(sig, si, uctx);
        else
            p->sa_handler(sig);
        chaining = 0;
        return;
    }
    /* default action: restore it and let the fault happen again */
    signal(sig, SIG_DFL);
}

/* The interrupted thread's program counter and frame pointer. */
static void context_pc_fp(void *uctx, uintptr_t *pc, uintptr_t *fp) {
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
#elif defined(__aarch64__)
    *pc = (uintptr_t)uc->uc_mcontext.pc;
    *fp = (uintptr_t)uc->uc_mcontext.regs[29];
#else
#error "unsupported architecture"
#endif
}

static void on_fault(int sig, siginfo_t *si, void *uctx) {
    uintptr_t pc, fp;
    context_pc_fp(uctx, &pc, &fp);
    if (cur_entry && pc_in_wasm(pc)) {
        uint32_t code = WA_TRAP_MEMORY_OOB;
        uintptr_t addr = (uintptr_t)si->si_addr;
        /* a fault just below the stack limit is the guard page: the second line of defence */
        if (sig == SIGSEGV && addr < thread_limit && addr + 2 * WA_STACK_MARGIN >= thread_limit)
            code = WA_TRAP_STACK_OVERFLOW;
        if (sig == SIGILL || sig == SIGTRAP) code = WA_TRAP_UNREACHABLE;
        if (sig == SIGFPE) code = 2; /* integer divide by zero (explicit checks make this rare) */
        raise_trap(code, pc, fp);
    }
    chain(sig, si, uctx);
}

/* An interrupt: wasm code can be left at any instruction (it holds no locks), anything else
 * (the runtime's C helpers, a host function) is left alone and the interrupt kept pending. */
static void on_interrupt(int sig, siginfo_t *si, void *uctx) {
    uintptr_t pc, fp;
    (void)sig;
    context_pc_fp(uctx, &pc, &fp);
    /* a deadline stops only the wasm called inside its block: the calls deeper than the one in
     * progress when it began (its depth comes with the signal) */
    int above = si->si_code == SI_QUEUE ? si->si_value.sival_int : 0;
    if (!cur_entry || entry_depth <= above) return;
    if (pc_in_wasm(pc)) {
        interrupt_blocked = 1;
        raise_trap(WA_TRAP_INTERRUPTED, pc, fp);
    }
    if (!interrupt_pending || above < pending_above) pending_above = above;
    interrupt_pending = 1;
}

/* Asks `thread` (a pthread_t, Python's threading ident) to stop the wasm it is running. */
int wa_interrupt(unsigned long thread) { return pthread_kill((pthread_t)thread, WA_SIG_INTERRUPT); }

/* The same, for the wasm calls of `thread` deeper than `depth` (its wa_entry_depth when asked). */
int wa_interrupt_deeper(unsigned long thread, int depth) {
    union sigval v;
    v.sival_int = depth;
    return pthread_sigqueue((pthread_t)thread, WA_SIG_INTERRUPT, v);
}

/* The signal number interrupts use (a real-time one). */
int wa_interrupt_signal(void) { return WA_SIG_INTERRUPT; }

/* This thread's number of wasm calls in progress. */
int wa_entry_depth(void) { return entry_depth; }

static const int fault_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};

/* Puts on_fault first for every fault signal, chaining to what is there now. A handler installed
 * after ours (faulthandler.enable() after the import, say) would otherwise see wasm's faults first
 * and treat them as fatal: the loader calls this again after such a change. */
int wa_reassert_handlers(void) {
    for (unsigned i = 0; i < sizeof fault_sigs / sizeof *fault_sigs; i++) {
        int sig = fault_sigs[i];
        struct sigaction cur, sa;
        if (sigaction(sig, NULL, &cur) != 0) return -1;
        if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        prev_action[sig] = cur;  /* before ours is in place: a fault meanwhile chains to it */
        if (sigaction(sig, &sa, NULL) != 0) return -1;
    }
    return 0;
}

/* Installs the fault handlers, chaining to whatever was there (faulthandler, for one). */
int wa_install_handlers(void) {
    if (handlers_installed) return 0;
    if (wa_reassert_handlers() != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_interrupt;
    /* Not NODEFER: a deadline queues a signal every millisecond, and a thread that did not run for a
     * while (a loaded machine) gets them all at once; nested, they ran off the end of the signal
     * stack (a crash). Blocked during the handler, they come one after another. A handler that
     * leaves by siglongjmp leaves its signal blocked: wa_invoke unblocks it where it lands.
     * RESTART: system calls of a host function resume. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(WA_SIG_INTERRUPT, &sa, NULL) != 0) return -1;
    handlers_installed = 1;
    return 0;
}

/* The initial thread's stack without pthread_getattr_np, which reads /proc/self/maps for it
 * (~100 us, on the first wasm call of a process): the stack's top is just above the program's name,
 * the first thing execve puts there, and the kernel grows it down to its rlimit from that top (as
 * glibc computes it too).  0 where that does not apply: another thread, no finite rlimit. */
static int initial_thread_stack(uintptr_t *low, uintptr_t *high) {
    struct rlimit rl;
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    if (getpid() != (pid_t)syscall(SYS_gettid) || !execfn || getrlimit(RLIMIT_STACK, &rl) != 0 ||
        rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1ull << 30))
        return 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t top = ((uintptr_t)execfn + strlen(execfn) + 1 + sizeof(void *) + page - 1) & ~(page - 1);
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (here >= top || top - here >= rl.rlim_cur)  /* not running on that stack after all */
        return 0;
    *low = top - (rl.rlim_cur & ~(page - 1));
    *high = top;
    return 1;
}

/* This thread's stack bounds; `exact`: by pthread_getattr_np even for the initial thread (tests
 * compare the two).  Returns 0 if they are unknown. */
int wa_thread_stack(uintptr_t *low, uintptr_t *high, int exact) {
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (!exact && initial_thread_stack(low, high))
        return 1;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return 0;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    *low = (uintptr_t)addr;
    *high = (uintptr_t)addr + size;
    return 1;
}

static void init_thread(void) {
    if (!wa_thread_stack(&thread_stack_low, &thread_stack_high, 0)) {
        uintptr_t here = (uintptr_t)__builtin_frame_address(0);
        thread_stack_low = here - (1u << 20);
        thread_stack_high = here + 4096;
    }
    /* a huge stack (an unlimited rlimit: pthread reports up to the next mapping, gigabytes) would let
     * runaway recursion take all memory before it traps: wasm gets at most WA_MAX_STACK of it */
    uintptr_t here = (uintptr_t)__builtin_frame_address(0), low = thread_stack_low;
    if (here > low + WA_MAX_STACK) low = here - WA_MAX_STACK;
    thread_limit = low + WA_STACK_MARGIN;
    if (!thread_altstack_done) {
        /* the guard page's fault must have a stack to run on */
        stack_t old;
        if (sigaltstack(NULL, &old) == 0 && (old.ss_flags & SS_DISABLE)) {
            stack_t ss;
            ss.ss_size = 64 * 1024;
            ss.ss_sp = malloc(ss.ss_size);
            ss.ss_flags = 0;
            if (ss.ss_sp) sigaltstack(&ss, NULL);
        }
        thread_altstack_done = 1;
    }
}

/* ---------- stack limits ---------- */

static uintptr_t thread_pointer(void) {
#if defined(__x86_64__)
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
#else
    return (uintptr_t)__builtin_thread_pointer();
#endif
}

/* Where generated code finds the running thread's stack limit: thread pointer + this offset. */
intptr_t wa_stack_limit_tls_offset(void) { return (intptr_t)((uintptr_t)&thread_limit - thread_pointer()); }

/* Calls `code(callee_ctx, args...)` through the per-signature trampoline, arguments and results
 * in `slots`. Returns 0, or the trap code (with the wasm frames in frames, their count in nframes). */
uint32_t wa_invoke(void *tramp, void *callee_ctx, void *code, uint8_t *slots,
                   uintptr_t *frames, uint32_t *nframes) {
    wa_entry e;
    uint32_t rc = 0;
    if (!thread_limit) init_thread();
    e.prev = cur_entry;
    e.nframes = 0;
    cur_entry = &e;
    entry_depth++;
    if (sigsetjmp(e.jb, 0) == 0) {
        ((void (*)(void *, void *, uint8_t *))tramp)(callee_ctx, code, slots);
    } else {
        rc = e.code;
        if (interrupt_blocked) {
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, WA_SIG_INTERRUPT);
            interrupt_blocked = 0;
            pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        }
        if (frames && nframes) {
            memcpy(frames, e.frames, e.nframes * sizeof(uintptr_t));
            *nframes = e.nframes;
        }
    }
    cur_entry = e.prev;
    entry_depth--;
    /* a pending interrupt for calls that are all over now (the outermost, or those a deadline opened
     * inside a host function) must not stop the call that goes on */
    if (interrupt_pending && entry_depth <= pending_above) interrupt_pending = 0;
    return rc;
}

/* Fills the funcrefs of an instance's defined functions: one call instead of three cffi writes per
 * function (large modules have thousands). */
/* The largest of a[0..n) (0 when n is 0): the loader's check of an artifact's type indices, which
 * in Python would make an int of each. */
uint32_t wa_max_u32(const uint32_t *a, size_t n) {
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* The addresses a module descriptor refers to, resolved from its relative offsets (see abi.py) into
 * out: its defined functions, then trampolines, shims and data segments (counts from the metadata).
 * The descriptor is read where the image's bytes are, [base, base + span); code addresses come out
 * where it runs (run), data where it is read.  The counts must be the descriptor's own, and every
 * address must lie in the image: -1 otherwise. */
static int resolve_rel(const int64_t *field, uint32_t n, uintptr_t lo, uintptr_t hi, uintptr_t run, uintptr_t *out) {
    if (!n) return 0;
    if (!*field) return -1;
    uintptr_t arr = (uintptr_t)field + (uintptr_t)*field;
    if (arr < lo || arr > hi || (hi - arr) / sizeof(int64_t) < n || arr % sizeof(int64_t)) return -1;
    const int64_t *rel = (const int64_t *)arr;
    for (uint32_t i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)&rel[i] + (uintptr_t)rel[i];
        if (a < lo || a >= hi) return -1;
        out[i] = a - lo + run;
    }
    return 0;
}

static int wa_module_addresses(const wa_module_desc *d, const void *base, size_t span, const void *run, uint32_t nfuncs,
                        uint32_t ntypes, uint32_t nshims, uint32_t ndatas, uintptr_t *out) {
    uintptr_t lo = (uintptr_t)base, hi = lo + span, at = (uintptr_t)run;
    if (d->nfuncs != nfuncs || d->ntypes != ntypes || d->nshims != nshims || d->ndatas != ndatas) return -1;
    if (resolve_rel(&d->funcs, nfuncs, lo, hi, at, out) || resolve_rel(&d->tramps, ntypes, lo, hi, at, out + nfuncs) ||
        resolve_rel(&d->shims, nshims, lo, hi, at, out + nfuncs + ntypes) ||
        resolve_rel(&d->datas, ndatas, lo, hi, lo, out + nfuncs + ntypes + nshims))
        return -1;
    return 0;
}

/* The entries of an instance's funcs array (nfuncs of them, the first nimported filled by the
 * loader) for the defined functions among refs[0..nrefs): those that can become a funcref (C.refs:
 * exports, elements, global initialisers, and the start function).  The others are never read (direct
 * calls do not go through the array), so a large array stays untouched, and its fresh pages unfaulted.
 * code and type_index are per defined function.  -1 if an index is out of range. */
int wa_fill_funcrefs(wa_funcref *funcs, uint32_t nfuncs, uint32_t nimported, void *const *code,
                     const uint32_t *type_index, const uint32_t *type_ids, void *ctx, const uint32_t *refs,
                     uint32_t nrefs) {
    for (uint32_t k = 0; k < nrefs; k++) {
        uint32_t i = refs[k];
        if (i >= nfuncs) return -1;
        if (i < nimported) continue;
        funcs[i].code = code[i - nimported];
        funcs[i].ctx = ctx;
        funcs[i].type_id = type_ids[type_index[i - nimported]];
    }
    return 0;
}

/* Zeroed memory for cffi's allocator, for arrays mostly left untouched: a very large one is mapped,
 * so its pages stay unfaulted until used.  (calloc, like cffi's own clearing, writes every page:
 * ~20 us for 48 KB of fresh memory here, 1-2 us for memory freed earlier; mapping and unmapping
 * cost ~2 us plus ~10 us to tear down what was touched, which only pays above a few hundred KB.)
 * A 16-byte header records the size. */
#define WA_MAP_AT_LEAST (256u << 10)
void *wa_calloc(size_t n) {
    size_t total = n + 16;
    uint8_t *p;
    if (total >= WA_MAP_AT_LEAST) {
        p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
    } else if (!(p = calloc(1, total))) {
        return NULL;
    }
    memcpy(p, &total, sizeof total);
    return p + 16;
}

void wa_free(void *q) {
    if (!q) return;
    uint8_t *p = (uint8_t *)q - 16;
    size_t total;
    memcpy(&total, p, sizeof total);
    if (total >= WA_MAP_AT_LEAST) munmap(p, total);
    else free(p);
}

/* ---------- host functions ---------- */

/* Back from a host function: its failure traps, and so does an interrupt that came meanwhile. */
static void host_returned(int failed) {
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    if (failed) raise_trap(WA_TRAP_HOST, 0, fp);
    if (interrupt_pending) {
        interrupt_pending = 0;
        raise_trap(WA_TRAP_INTERRUPTED, 0, fp);
    }
}

/* Python code needs more stack than the margin wasm leaves below its limit: a host call made deep in
 * wasm recursion, with less than this left (a quarter of a small thread's stack), traps as a stack
 * overflow rather than let Python run off the end of the stack (a crash, past its recursion limit's
 * reach: C frames of builtins count too). */
#define WA_HOST_STACK ((uintptr_t)1 << 20)

static void host_entering(void) {
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0), low = thread_limit - WA_STACK_MARGIN;
    uintptr_t need = (thread_stack_high - low) / 4 < WA_HOST_STACK ? (thread_stack_high - low) / 4 : WA_HOST_STACK;
    if (sp < low + need) raise_trap(WA_TRAP_STACK_OVERFLOW, 0, sp);
}

static void host_call(wa_hostfunc *hf, uint8_t *slots) {
    host_entering();
    host_returned(wa_py_host_call(hf->handle, slots) != 0);
}

/* Host functions of numeric signatures are called by wasm_aot._fastcall's dispatcher, in C. */
static int (*fast_dispatch)(void *handle, uint8_t *slots);

static void host_call_fast(wa_hostfunc *hf, uint8_t *slots) {
    host_entering();
    host_returned(fast_dispatch(hf->handle, slots) != 0);
}

void *wa_host_call_ptr(void) { return (void *)host_call; }
void *wa_host_call_fast_ptr(void) { return (void *)host_call_fast; }
void *wa_host_dispatch_cell(void) { return (void *)&fast_dispatch; }
void *wa_invoke_ptr(void) { return (void *)wa_invoke; }

/* ---------- memories ---------- */

wa_memory *wa_memory_new(uint32_t min_pages, uint64_t max_pages, int guarded) {
    wa_memory *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    uint64_t reserve = guarded ? (8ull << 30) + WA_PAGE : max_pages * WA_PAGE;
    if (reserve == 0) reserve = WA_PAGE; /* keep a unique, faulting base even for 0 pages */
    void *p = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { free(m); return NULL; }
    if (min_pages && mprotect(p, (uint64_t)min_pages * WA_PAGE, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, reserve);
        free(m);
        return NULL;
    }
    m->base = p;
    m->size = (uint64_t)min_pages * WA_PAGE;
    m->max_pages = max_pages;
    m->reserved = reserve;
    return m;
}

void wa_memory_free(wa_memory *m) {
    if (!m) return;
    munmap(m->base, m->reserved);
    free(m);
}

/* Returns the old size in pages, or -1 (as uint32) when the memory cannot grow. */
/* Growing is serialised: an instance may run in several threads at once, and two grows racing
 * would both commit the same pages and lose one size update. */
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;

/* A fork while another thread holds one of these locks would leave it held forever in the child
 * (linking registers code ranges, growing a memory mprotects under its lock): taken around fork. */
static void locks_prefork(void) {
    pthread_mutex_lock(&range_lock);
    pthread_mutex_lock(&grow_lock);
}

static void locks_postfork(void) {
    pthread_mutex_unlock(&grow_lock);
    pthread_mutex_unlock(&range_lock);
}

__attribute__((constructor)) static void register_fork_handlers(void) {
    pthread_atfork(locks_prefork, locks_postfork, locks_postfork);
}

uint32_t wa_memory_grow(wa_memory *m, uint32_t delta) {
    uint32_t rc = UINT32_MAX;
    pthread_mutex_lock(&grow_lock);
    uint64_t old = m->size / WA_PAGE, new_pages = old + delta;
    if (new_pages <= m->max_pages && new_pages * WA_PAGE <= m->reserved &&
        (!delta || mprotect(m->base + m->size, (uint64_t)delta * WA_PAGE, PROT_READ | PROT_WRITE) == 0)) {
        __atomic_store_n(&m->size, new_pages * WA_PAGE, __ATOMIC_RELEASE);
        rc = (uint32_t)old;
    }
    pthread_mutex_unlock(&grow_lock);
    return rc;
}

/* ---------- tables ---------- */

/* A table's element array is never freed while the table lives: wasm running in another thread may
 * still read the array a grow has just replaced (it loads the size, with acquire, then the array).
 * Each array's hidden slot [-1] points to the allocation of the one it replaced. */
static void **elems_alloc(uint64_t cap, void **replaced) {
    void **a = calloc(cap + 1, sizeof(void *));
    if (!a) return NULL;
    a[0] = replaced ? (void *)(replaced - 1) : NULL;
    return a + 1;
}

wa_table *wa_table_new(uint32_t min, uint32_t max, uint32_t kind) {
    wa_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->elems = elems_alloc(min ? min : 1, NULL);
    if (!t->elems) { free(t); return NULL; }
    t->size = t->capacity = min;
    t->max = max;
    t->kind = kind;
    return t;
}

void wa_table_free(wa_table *t) {
    if (!t) return;
    for (void **a = t->elems - 1; a;) {
        void **replaced = (void **)a[0];
        free(a);
        a = replaced;
    }
    free(t);
}

uint32_t wa_table_grow(wa_table *t, void *init, uint32_t delta) {
    uint32_t rc = UINT32_MAX;
    pthread_mutex_lock(&grow_lock);
    uint64_t old = t->size, n = old + delta;
    if (n > t->max || n > UINT32_MAX) goto out;
    if (n > t->capacity) {
        uint64_t cap = t->capacity * 2 > n ? t->capacity * 2 : n;
        if (cap > t->max) cap = t->max;
        void **e = elems_alloc(cap, t->elems);
        if (!e) goto out;
        memcpy(e, t->elems, old * sizeof(void *));
        for (uint64_t i = old; i < n; i++) e[i] = init;
        __atomic_store_n(&t->elems, e, __ATOMIC_RELEASE);  /* the array before the size that needs it */
        t->capacity = (uint32_t)cap;
    } else {
        for (uint64_t i = old; i < n; i++) t->elems[i] = init;
    }
    __atomic_store_n(&t->size, (uint32_t)n, __ATOMIC_RELEASE);
    rc = (uint32_t)old;
out:
    pthread_mutex_unlock(&grow_lock);
    return rc;
}

/* ---------- helpers called from generated code through ctx->rt ---------- */

/* Sizes read with acquire: what a grow in another thread published before the size (the committed
 * pages, the table's new array) is then visible. */
static uint64_t mem_size(const wa_memory *m) { return __atomic_load_n(&m->size, __ATOMIC_ACQUIRE); }
static uint32_t table_size(const wa_table *t) { return __atomic_load_n(&t->size, __ATOMIC_ACQUIRE); }

#define CHECK_RANGE(off, n, size, code) \
    do { if ((uint64_t)(off) + (uint64_t)(n) > (uint64_t)(size)) rt_trap(ctx, code); } while (0)

static uint32_t rt_memory_grow(wa_ctx *ctx, uint32_t delta) { return wa_memory_grow(ctx->mem0, delta); }

static void rt_memory_fill(wa_ctx *ctx, uint32_t d, uint32_t val, uint32_t n) {
    CHECK_RANGE(d, n, mem_size(ctx->mem0), WA_TRAP_MEMORY_OOB);
    memset(ctx->mem0_base + d, (int)val, n);
}

static void rt_memory_copy(wa_ctx *ctx, uint32_t d, uint32_t s, uint32_t n) {
    uint64_t size = mem_size(ctx->mem0);
    CHECK_RANGE(d, n, size, WA_TRAP_MEMORY_OOB);
    CHECK_RANGE(s, n, size, WA_TRAP_MEMORY_OOB);
    memmove(ctx->mem0_base + d, ctx->mem0_base + s, n);
}

static void rt_memory_init(wa_ctx *ctx, uint32_t seg, uint32_t d, uint32_t s, uint32_t n) {
    CHECK_RANGE(s, n, ctx->data_sizes[seg], WA_TRAP_MEMORY_OOB);
    CHECK_RANGE(d, n, mem_size(ctx->mem0), WA_TRAP_MEMORY_OOB);
    if (n) memcpy(ctx->mem0_base + d, ctx->data_ptrs[seg] + s, n);
}

static void rt_data_drop(wa_ctx *ctx, uint32_t seg) { ctx->data_sizes[seg] = 0; }

static uint32_t rt_table_grow(wa_ctx *ctx, uint32_t t, void *init, uint32_t delta) {
    return wa_table_grow(ctx->tables[t], init, delta);
}

static void rt_table_fill(wa_ctx *ctx, uint32_t t, uint32_t d, void *val, uint32_t n) {
    wa_table *tab = ctx->tables[t];
    CHECK_RANGE(d, n, table_size(tab), WA_TRAP_TABLE_OOB);
    for (uint32_t i = 0; i < n; i++) tab->elems[d + i] = val;
}

static void rt_table_copy(wa_ctx *ctx, uint32_t dt, uint32_t st, uint32_t d, uint32_t s, uint32_t n) {
    wa_table *dst = ctx->tables[dt], *src = ctx->tables[st];
    CHECK_RANGE(d, n, table_size(dst), WA_TRAP_TABLE_OOB);
    CHECK_RANGE(s, n, table_size(src), WA_TRAP_TABLE_OOB);
    memmove(dst->elems + d, src->elems + s, (size_t)n * sizeof(void *));
}

static void rt_table_init(wa_ctx *ctx, uint32_t t, uint32_t seg, uint32_t d, uint32_t s, uint32_t n) {
    wa_table *tab = ctx->tables[t];
    CHECK_RANGE(s, n, ctx->elem_sizes[seg], WA_TRAP_TABLE_OOB);
    CHECK_RANGE(d, n, table_size(tab), WA_TRAP_TABLE_OOB);
    if (n) memcpy(tab->elems + d, ctx->elem_items[seg] + s, (size_t)n * sizeof(void *));
}

static void rt_elem_drop(wa_ctx *ctx, uint32_t seg) { ctx->elem_sizes[seg] = 0; }

static const wa_rt the_rt = {
    rt_trap, rt_memory_grow, rt_memory_fill, rt_memory_copy, rt_memory_init, rt_data_drop,
    rt_table_grow, rt_table_fill, rt_table_copy, rt_table_init, rt_elem_drop,
};

const void *wa_rt_ptr(void) { return &the_rt; }

/* Instantiation-time segment copies, with the same bounds rules as memory.init / table.init. */
int wa_init_memory(wa_memory *m, uint64_t d, const uint8_t *src, uint64_t n) {
    if (d + n > mem_size(m)) return -1;
    if (n) memcpy(m->base + d, src, n);
    return 0;
}

int wa_init_table(wa_table *t, uint64_t d, void **items, uint64_t n) {
    if (d + n > table_size(t)) return -1;
    if (n) memcpy(t->elems + d, items, n * sizeof(void *));
    return 0;
}
