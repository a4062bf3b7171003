/*
 * thread_blas.h -- the private one-thread BLAS that threads sharing a
 * batch call (thread_blas.c).
 */
#ifndef CNNBP_THREAD_BLAS_H
#define CNNBP_THREAD_BLAS_H

/* thread_blas.c: the BLAS that threads sharing a batch call for their
 * products, each call on the calling thread alone: a private instance of
 * OpenBLAS kept at one thread (see cnn_bp/_threads.py), never the process's
 * BLAS, whose thread count is the user's. Members are NULL until loaded.
 * Fortran conventions (column-major, arguments by pointer). */
typedef void (*cnnbp_sgemm_fn)(const char *, const char *, const int *, const int *,
                               const int *, const float *, const float *, const int *,
                               const float *, const int *, const float *, float *,
                               const int *);
typedef void (*cnnbp_dgemm_fn)(const char *, const char *, const int *, const int *,
                               const int *, const double *, const double *,
                               const int *, const double *, const int *,
                               const double *, double *, const int *);
typedef float (*cnnbp_sdot_fn)(const int *, const float *, const int *, const float *,
                               const int *);
typedef double (*cnnbp_ddot_fn)(const int *, const double *, const int *,
                                const double *, const int *);
typedef float (*cnnbp_sasum_fn)(const int *, const float *, const int *);
typedef double (*cnnbp_dasum_fn)(const int *, const double *, const int *);
typedef struct {
    cnnbp_sgemm_fn sgemm;
    cnnbp_dgemm_fn dgemm;
    cnnbp_sdot_fn sdot;   /* the penalty's sums, too: BLAS's level-1 calls */
    cnnbp_ddot_fn ddot;   /* would wake the process BLAS's threads */
    cnnbp_sasum_fn sasum;
    cnnbp_dasum_fn dasum;
} cnnbp_blas;
extern cnnbp_blas cnnbp_thread_blas;
/* Before an epoch's `threads` threads call cnnbp_thread_blas: 1 once its
 * work buffers for them (and for the epochs running now) are mapped, 0 when
 * they cannot be (no memory: nothing called, nothing to leave). Each 1 is
 * paired with cnnbp_blas_leave(threads) when those threads are done. */
int cnnbp_blas_enter(int threads);
void cnnbp_blas_leave(int threads);
/* The fork gate: every call of cnnbp_thread_blas is made between these two.
 * A fork (its pthread_atfork handler) waits for the calls under way, each a
 * bounded product, and holds new ones until it is done: a child never starts
 * with one of OpenBLAS's own locks (its buffer table's) held by a thread it
 * does not have, which would hang its first product. */
void cnnbp_blas_call_begin(void);
void cnnbp_blas_call_end(void);

#endif /* CNNBP_THREAD_BLAS_H */
