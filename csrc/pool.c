/*
 * pool.c -- the helper threads that take parts of training batches.
 *
 * The parallel layer (team.c) shares every training batch with up to
 * T - 1 helpers: the caller posts each helper a job (its rows forward and
 * back; then its share of the update), does its own part, and waits for
 * theirs. A one-row prediction shares the inputs of its mid-sized layers
 * with one helper alike.
 *
 * Helpers are started on first use, up to CNNBP_MAX_HELPERS, and serve the
 * whole process; an engine takes some for one slice of an epoch
 * (cnnbp_helpers_acquire / _release): as many as are free, up to its share
 * of T (fits running side by side split T between them, the split made
 * anew at every slice), and none ever waits for another. Between the
 * jobs of an epoch (two per batch, microseconds to milliseconds apart) a
 * helper spins so that a job starts at once; after a short while
 * without one it sleeps on a condition variable (waking takes far longer,
 * on a busy machine much longer, so a prediction that finds
 * its helper asleep nudges it awake and works alone). Helpers block all
 * signals (Python handles them in the main thread); a forked child starts
 * afresh, with no helpers and none held.
 *
 * T, the threads a fit may use (the caller and T - 1 helpers), is the
 * number of cores the process may run on, or OMP_NUM_THREADS (read when
 * the module loads), or what threadpoolctl set (cnnbp_set_num_threads,
 * through cnn_bp._threads' controller): as scikit-learn's OpenMP code
 * chooses.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_SECONDS 2e-3

typedef struct {
    pthread_mutex_t owner;  /* held by the engine using the helper */
    pthread_mutex_t lock;   /* guards sleeping and nudged, with wake */
    pthread_cond_t wake;
    atomic_uint posted;     /* jobs posted so far */
    atomic_uint finished;   /* jobs finished so far */
    cnnbp_job fn;
    void *arg;
    atomic_int started;
    int sleeping;
    int nudged;             /* wake without a job */
} helper_t;

static helper_t H[CNNBP_MAX_HELPERS];
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int thread_limit;  /* threadpoolctl's limit; 0: none set */
static atomic_int callers;       /* callers holding (or having asked for) helpers */
static atomic_int awake;         /* helpers not asleep */
static int cores;                /* cnnbp_available_cores(), counted when the pool starts */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_helpers(void)
{
    for (int i = 0; i < CNNBP_MAX_HELPERS; i++) {
        helper_t *h = &H[i];
        pthread_mutex_init(&h->owner, NULL);
        pthread_mutex_init(&h->lock, NULL);
        pthread_cond_init(&h->wake, NULL);
        atomic_store(&h->posted, 0);
        atomic_store(&h->finished, 0);
        atomic_store(&h->started, 0);
        h->sleeping = 0;
        h->nudged = 0;
    }
}

/* In a forked child no helper thread exists and no lock is held: afresh. */
static void reset_in_child(void)
{
    init_helpers();
    pthread_mutex_init(&start_lock, NULL);
    atomic_store(&callers, 0);
    atomic_store(&awake, 0);
}

static void init_pool(void)
{
    cores = cnnbp_available_cores();
    init_helpers();
    pthread_atfork(NULL, NULL, reset_in_child);
}

static void *serve(void *arg)
{
    helper_t *h = arg;
    unsigned seen = 0;
    for (;;) {
        /* spin for a while, then sleep until a job is posted; at once when
         * more threads are awake than there are cores (T forced above them):
         * a spinning thread would hold a core the others' parts wait for */
        double until = cnnbp_seconds(CLOCK_MONOTONIC) + SPIN_SECONDS;
        unsigned spins = 0;
        while (atomic_load_explicit(&h->posted, memory_order_acquire) == seen) {
            CPU_RELAX();
            if (++spins % 256 == 0
                && (atomic_load(&awake) + atomic_load(&callers) > cores
                    || cnnbp_seconds(CLOCK_MONOTONIC) > until)) {
                pthread_mutex_lock(&h->lock);
                h->sleeping = 1;
                atomic_fetch_sub(&awake, 1);
                while (atomic_load_explicit(&h->posted, memory_order_acquire) == seen
                       && !h->nudged)
                    pthread_cond_wait(&h->wake, &h->lock);
                h->sleeping = h->nudged = 0;
                atomic_fetch_add(&awake, 1);
                pthread_mutex_unlock(&h->lock);
                until = cnnbp_seconds(CLOCK_MONOTONIC) + SPIN_SECONDS;  /* spin again */
            }
        }
        seen++;
        h->fn(h->arg);
        atomic_store_explicit(&h->finished, seen, memory_order_release);
    }
    return NULL;
}

/* Start helper i's thread if it has none (its owner is held). */
static int start(int i)
{
    if (atomic_load_explicit(&H[i].started, memory_order_acquire))
        return 1;
    pthread_mutex_lock(&start_lock);
    int ok = atomic_load(&H[i].started);
    if (!ok) {
        pthread_t thread;
        ok = cnnbp_start_thread(&thread, 0, serve, &H[i]);
        if (ok) {
            pthread_detach(thread);
            atomic_fetch_add(&awake, 1);
            atomic_store_explicit(&H[i].started, 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&start_lock);
    return ok;
}

int cnnbp_helpers_acquire(int want, int *ids)
{
    pthread_once(&init_once, init_pool);
    /* fits side by side share the T threads: each caller, itself included,
     * takes at most T / (callers now) of them (rebalanced at every slice) */
    int active = atomic_fetch_add(&callers, 1) + 1;
    int share = cnnbp_get_num_threads() / (active > 1 ? active : 1) - 1;
    if (want > share)
        want = share;
    int got = 0;
    for (int i = 0; i < CNNBP_MAX_HELPERS && got < want; i++) {
        if (pthread_mutex_trylock(&H[i].owner) != 0)
            continue;
        if (!start(i)) {
            pthread_mutex_unlock(&H[i].owner);
            break;
        }
        ids[got++] = i;
    }
    return got;
}

void cnnbp_helpers_release(int n, const int *ids)
{
    for (int k = 0; k < n; k++)
        pthread_mutex_unlock(&H[ids[k]].owner);
    atomic_fetch_sub(&callers, 1);
}

void cnnbp_helper_post(int id, cnnbp_job fn, void *arg)
{
    helper_t *h = &H[id];
    h->fn = fn;
    h->arg = arg;
    atomic_fetch_add_explicit(&h->posted, 1, memory_order_release);
    pthread_mutex_lock(&h->lock);
    if (h->sleeping)
        pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
}

void cnnbp_helper_wait(int id)
{
    helper_t *h = &H[id];
    unsigned target = atomic_load_explicit(&h->posted, memory_order_relaxed);
    unsigned spins = 0;
    while (atomic_load_explicit(&h->finished, memory_order_acquire) != target) {
        CPU_RELAX();
        if (++spins > 4096)  /* the helper lost its core: let it have ours */
            sched_yield();
    }
}

int cnnbp_helper_awake(int id)
{
    helper_t *h = &H[id];
    pthread_mutex_lock(&h->lock);
    int asleep = h->sleeping;
    if (asleep) {
        h->nudged = 1;
        pthread_cond_signal(&h->wake);
    }
    pthread_mutex_unlock(&h->lock);
    return !asleep;
}

unsigned cnnbp_helper_jobs(void)
{
    pthread_once(&init_once, init_pool);
    unsigned jobs = 0;
    for (int i = 0; i < CNNBP_MAX_HELPERS; i++)
        jobs += atomic_load_explicit(&H[i].finished, memory_order_acquire);
    return jobs;
}

int cnnbp_available_cores(void)
{
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* OMP_NUM_THREADS as the process started with it, read once, as OpenMP
 * runtimes read it when they load (a library that sets it later for its
 * own child processes, as Dask's nanny does, changes nothing here). */
static int env_threads;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void read_env(void)
{
    const char *env = getenv("OMP_NUM_THREADS");
    int n = env != NULL ? atoi(env) : 0;  /* "4" or "4,2" (nested levels: the first) */
    env_threads = n > 0 ? n : 0;
}

int cnnbp_get_num_threads(void)
{
    int limit = atomic_load(&thread_limit);
    if (limit > 0)
        return limit;
    pthread_once(&env_once, read_env);
    return env_threads > 0 ? env_threads : cnnbp_available_cores();
}

void cnnbp_set_num_threads(int n)
{
    atomic_store(&thread_limit, n > 0 ? n : 0);
}
