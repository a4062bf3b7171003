/*
 * threads.c -- starting a thread and reading a clock (parallel.h): no state,
 * so every extension that starts threads links its own copy (pool.c's
 * helpers in the plan, thread_blas.c's warming threads in the passes).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include "parallel.h"

int cnnbp_start_thread(pthread_t *thread, size_t stack, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    sigset_t all, old;
    if (pthread_attr_init(&attr) != 0)
        return 0;
    if (stack > 0)
        pthread_attr_setstacksize(&attr, stack);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* the thread inherits it */
    int ok = pthread_create(thread, &attr, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return ok;
}

double cnnbp_seconds(int clock)
{
    struct timespec t;
    clock_gettime((clockid_t)clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
