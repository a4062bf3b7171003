/*
 * helper.c -- one helper thread that takes half of each training batch.
 *
 * A training epoch (_epoch in _engine.pyx) can share every batch with the
 * helper: the caller posts a job (half the rows forward and back; then
 * half of the update), does its own half, and waits for the helper's. A
 * one-row prediction shares the units of its mid-sized layers alike.
 *
 * One helper serves the process; an engine takes it for one epoch
 * (cnnbp_helper_acquire / _release) or, when another engine has it, works
 * alone. Between the jobs of an epoch (two per batch, microseconds to
 * milliseconds apart) the helper spins so that a job starts within a
 * microsecond; after ~2 ms without one it sleeps on a condition variable
 * (waking takes tens of microseconds, on a busy machine milliseconds, so a
 * prediction that finds it asleep nudges it awake and works alone).
 * It blocks all signals (Python handles them in the main thread) and is
 * started afresh in the child after fork().
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include "cnn_bp.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_SECONDS 2e-3

static struct {
    pthread_mutex_t owner;  /* held by the engine using the helper */
    pthread_mutex_t lock;   /* guards sleeping, with wake */
    pthread_cond_t wake;
    atomic_uint posted;     /* jobs posted so far */
    atomic_uint finished;   /* jobs finished so far */
    cnnbp_job fn;
    void *arg;
    int started;
    int sleeping;
    int nudged;             /* wake without a job (guarded by lock) */
} H = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
       PTHREAD_COND_INITIALIZER};

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *serve(void *unused)
{
    (void)unused;
    unsigned seen = 0;
    for (;;) {
        /* spin for a while, then sleep until a job is posted */
        double until = now() + SPIN_SECONDS;
        unsigned spins = 0;
        while (atomic_load_explicit(&H.posted, memory_order_acquire) == seen) {
            CPU_RELAX();
            if (++spins % 256 == 0 && now() > until) {
                pthread_mutex_lock(&H.lock);
                H.sleeping = 1;
                while (atomic_load_explicit(&H.posted, memory_order_acquire) == seen
                       && !H.nudged)
                    pthread_cond_wait(&H.wake, &H.lock);
                H.sleeping = H.nudged = 0;
                pthread_mutex_unlock(&H.lock);
                until = now() + SPIN_SECONDS;  /* spin again */
            }
        }
        seen++;
        H.fn(H.arg);
        atomic_store_explicit(&H.finished, seen, memory_order_release);
    }
    return NULL;
}

/* In a forked child the helper thread does not exist: start afresh. */
static void reset_in_child(void)
{
    pthread_mutex_init(&H.owner, NULL);
    pthread_mutex_init(&H.lock, NULL);
    pthread_cond_init(&H.wake, NULL);
    atomic_store(&H.posted, 0);
    atomic_store(&H.finished, 0);
    H.started = 0;
    H.sleeping = 0;
    H.nudged = 0;
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, reset_in_child);
}

int cnnbp_helper_acquire(void)
{
    pthread_once(&fork_handler_once, register_fork_handler);
    if (pthread_mutex_trylock(&H.owner) != 0)
        return 0;
    if (!H.started) {
        sigset_t all, old;
        pthread_t thread;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);  /* the thread inherits it */
        int failed = pthread_create(&thread, NULL, serve, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (failed) {
            pthread_mutex_unlock(&H.owner);
            return 0;
        }
        pthread_detach(thread);
        H.started = 1;
    }
    return 1;
}

void cnnbp_helper_post(cnnbp_job fn, void *arg)
{
    H.fn = fn;
    H.arg = arg;
    atomic_fetch_add_explicit(&H.posted, 1, memory_order_release);
    pthread_mutex_lock(&H.lock);
    if (H.sleeping)
        pthread_cond_signal(&H.wake);
    pthread_mutex_unlock(&H.lock);
}

void cnnbp_helper_wait(void)
{
    unsigned target = atomic_load_explicit(&H.posted, memory_order_relaxed);
    unsigned spins = 0;
    while (atomic_load_explicit(&H.finished, memory_order_acquire) != target) {
        CPU_RELAX();
        if (++spins > 4096)  /* the helper lost its core: let it have ours */
            sched_yield();
    }
}

int cnnbp_helper_awake(void)
{
    pthread_mutex_lock(&H.lock);
    int asleep = H.sleeping;
    if (asleep) {
        H.nudged = 1;
        pthread_cond_signal(&H.wake);
    }
    pthread_mutex_unlock(&H.lock);
    return !asleep;
}

unsigned cnnbp_helper_jobs(void)
{
    return atomic_load_explicit(&H.finished, memory_order_acquire);
}

void cnnbp_helper_release(void)
{
    pthread_mutex_unlock(&H.owner);
}
