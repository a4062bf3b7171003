/*
 * thread_blas.c -- the one definition of cnnbp_thread_blas (thread_blas.h): the
 * GEMM the threads sharing a batch call, set once from Python; and the work
 * buffers that BLAS needs, mapped before an epoch's threads call it.
 *
 * OpenBLAS takes a work buffer for each GEMM call from a table the whole
 * library shares (driver/others/memory.c), and maps a new one (BUFFER_SIZE
 * and a page: 32 MiB on x86-64) when more threads call at once than ever
 * before; the buffers stay mapped. A mapping that fails ends the process:
 * "Memory allocation still failed after 10 retries, giving up", then
 * exit(1), from whichever thread called. So cnnbp_blas_enter, before an
 * epoch's threads run, makes sure the library has a buffer for every thread
 * that may call it at once: it proves the new ones can be mapped (a probe
 * mapping of their size) and has them mapped (that many threads calling it
 * together), or it fails, and the engine raises MemoryError instead.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "parallel.h"
#include "thread_blas.h"

cnnbp_blas cnnbp_thread_blas = {NULL, NULL, NULL, NULL, NULL, NULL};

/* What each thread that warms a new buffer may map: the buffer (OpenBLAS's
 * BUFFER_SIZE, 32 MiB on x86-64, and a page), the malloc arena of a thread
 * that OpenBLAS's first call in it creates (glibc reserves 64 MiB of address
 * space for one), and the thread's stack. */
#define BUFFER_BYTES ((size_t)33 << 20)
#define ARENA_BYTES ((size_t)64 << 20)
/* The warming products: m = n = WARM_N, k = WARM_K, past OpenBLAS's
 * small-matrix kernels (which take no buffer), a few milliseconds each. */
#define WARM_N 256
#define WARM_K 2048
#define WARM_STACK ((size_t)1 << 20)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int buffers;  /* threads the library has served at once: its buffers */
static int calling;  /* threads of the epochs running now */
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The fork gate: calls hold it to read, a fork to write. Writers first (where
 * glibc offers it), so a stream of calls on many threads cannot keep a fork
 * waiting. */
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#define GATE_INITIALIZER PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#else
#define GATE_INITIALIZER PTHREAD_RWLOCK_INITIALIZER
#endif
static pthread_rwlock_t gate = GATE_INITIALIZER;

static void close_gate(void)
{
    pthread_rwlock_wrlock(&gate);
}

static void open_gate(void)
{
    pthread_rwlock_unlock(&gate);
}

/* In a forked child only the forking thread runs: none calls, the buffers
 * (mappings) are inherited, and the lock may have been held. The gate was
 * closed by the fork: a fresh one. */
static void reset_in_child(void)
{
    pthread_rwlock_t fresh = GATE_INITIALIZER;
    gate = fresh;
    pthread_mutex_init(&lock, NULL);
    calling = 0;
}

static void init(void)
{
    pthread_atfork(close_gate, open_gate, reset_in_child);
}

void cnnbp_blas_call_begin(void)
{
    pthread_once(&once, init);
    pthread_rwlock_rdlock(&gate);
}

void cnnbp_blas_call_end(void)
{
    pthread_rwlock_unlock(&gate);
}

/* Whether `used` bytes of memory (charged as OpenBLAS's buffers and the
 * stacks are) and `reserved` bytes of address space (reserved as glibc
 * reserves an arena: no access, no commit charge) can be mapped at once. */
static int can_map(size_t used, size_t reserved)
{
    void *p = mmap(NULL, used, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 0;
    void *q = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    munmap(p, used);
    if (q == MAP_FAILED)
        return 0;
    munmap(q, reserved);
    return 1;
}

typedef struct {
    atomic_int waiting;   /* threads not yet at the start line */
    atomic_int unserved;  /* threads whose first call has not returned */
    const float *a;       /* WARM_N x WARM_K */
    float *c;             /* WARM_N^2 values per thread */
} warm_t;

typedef struct {
    warm_t *w;
    int k;
} warm_arg;

/* Each thread waits for all the others, then calls the BLAS until every
 * thread's first call has returned: while the last of them runs, the
 * others are inside calls of their own (but for the microsecond between
 * two), so the library serves them all at once. */
static void *warm(void *arg)
{
    warm_arg *p = arg;
    warm_t *w = p->w;
    int n = WARM_N, k = WARM_K, first = 1;
    float one = 1.0f, zero = 0.0f;
    atomic_fetch_sub(&w->waiting, 1);
    while (atomic_load(&w->waiting) > 0)
        sched_yield();
    do {
        cnnbp_blas_call_begin();
        cnnbp_thread_blas.sgemm("T", "N", &n, &n, &k, &one, w->a, &k, w->a, &k, &zero,
                                w->c + (size_t)p->k * WARM_N * WARM_N, &n);
        cnnbp_blas_call_end();
        if (first)
            atomic_fetch_sub(&w->unserved, 1);
        first = 0;
    } while (atomic_load(&w->unserved) > 0);
    return NULL;
}

/* Have `n` threads (this one and n - 1 new ones) call the BLAS together;
 * 0 if a thread could not be started or the matrices allocated. */
static int warm_threads(int n)
{
    warm_t w;
    float *a = calloc((size_t)WARM_N * WARM_K, sizeof(float));
    float *c = malloc((size_t)n * WARM_N * WARM_N * sizeof(float));
    warm_arg *args = malloc((size_t)n * sizeof(warm_arg));
    pthread_t *threads = malloc((size_t)n * sizeof(pthread_t));
    int started = 0;
    if (a != NULL && c != NULL && args != NULL && threads != NULL) {
        w.a = a;
        w.c = c;
        atomic_store(&w.waiting, n);
        atomic_store(&w.unserved, n);
        for (started = 1; started < n; started++) {
            args[started] = (warm_arg){&w, started};
            if (!cnnbp_start_thread(&threads[started], WARM_STACK, warm, &args[started]))
                break;
        }
        /* none waits for a thread not started */
        atomic_fetch_sub(&w.waiting, n - started);
        atomic_fetch_sub(&w.unserved, n - started);
        args[0] = (warm_arg){&w, 0};
        warm(&args[0]);
        for (int k = 1; k < started; k++)
            pthread_join(threads[k], NULL);
    }
    free(a);
    free(c);
    free(args);
    free(threads);
    return started == n;
}

int cnnbp_blas_enter(int threads)
{
    pthread_once(&once, init);
    pthread_mutex_lock(&lock);
    int at_once = calling + threads, ok = 1;
    if (at_once > buffers && cnnbp_thread_blas.sgemm != NULL) {
        /* the running epochs' threads may hold buffers while these warm */
        size_t threads_new = (size_t)(at_once + calling - buffers);
        ok = can_map(threads_new * (BUFFER_BYTES + WARM_STACK), threads_new * ARENA_BYTES)
             && warm_threads(at_once);
        if (ok)
            buffers = at_once;
    }
    if (ok)
        calling += threads;
    pthread_mutex_unlock(&lock);
    return ok;
}

void cnnbp_blas_leave(int threads)
{
    pthread_mutex_lock(&lock);
    calling -= threads;
    pthread_mutex_unlock(&lock);
}
