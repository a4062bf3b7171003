/*
 * parallel.h -- the threads that share a fit's work: pool.c, helper threads
 * shared by the whole process; team.c, the parallel layer that splits a
 * batch among them; the one-row split and the lockstep back-off.
 */
#ifndef CNNBP_PARALLEL_H
#define CNNBP_PARALLEL_H

#include <pthread.h>
#include <stddef.h>

/* pool.c: helper threads that take parts of batches (and of one-row
 * predictions), shared by the whole process. */
#define CNNBP_MAX_HELPERS 255
typedef void (*cnnbp_job)(void *arg);
/* Takes up to `want` free helpers (starting their threads on first use),
 * writes their ids to ids[0..got-1] and returns got: they are the caller's
 * until cnnbp_helpers_release(got, ids), which every call (even got = 0)
 * must be paired with. Fewer when others hold the rest, or when the caller's
 * share of T, T / (callers now), is smaller. */
int cnnbp_helpers_acquire(int want, int *ids);
void cnnbp_helpers_release(int n, const int *ids);
/* Run fn(arg) on helper `id`; one job at a time, each waited for. */
void cnnbp_helper_post(int id, cnnbp_job fn, void *arg);
void cnnbp_helper_wait(int id);
/* For the helper's owner: 1 if it is spinning (a job starts within a
 * microsecond); 0 if it was asleep, in which case it is woken to spin again
 * for a while, without a job. */
int cnnbp_helper_awake(int id);
/* Jobs all helpers have finished since the process (or fork) began. */
unsigned cnnbp_helper_jobs(void);
/* T, the threads a fit may use: threadpoolctl's limit if set, else
 * OMP_NUM_THREADS, else the cores the process may run on. */
int cnnbp_get_num_threads(void);
void cnnbp_set_num_threads(int n);  /* n <= 0: no limit */
/* The cores this process may run on (its affinity mask), at least 1. */
int cnnbp_available_cores(void);
/* threads.c (no state: linked into each extension that needs it). Start a
 * joinable thread running fn(arg) with every signal blocked (Python
 * handles signals in its main thread), on a stack of `stack` bytes (0: the
 * default); 1 if it started. pool.c's helpers and thread_blas.c's warming
 * threads are started so. */
int cnnbp_start_thread(pthread_t *thread, size_t stack, void *(*fn)(void *), void *arg);
/* clock_gettime(clock) in seconds (a clockid_t: CLOCK_MONOTONIC,
 * CLOCK_THREAD_CPUTIME_ID). */
double cnnbp_seconds(int clock);

/* team.c: the parallel layer. A fit's plan (cnnbp_plan_parts) splits each
 * batch into `parts` shares of rows and of parameters, run in two
 * hand-overs (phase 0: rows forward and back, each into its own gradient
 * sums; phase 1: split dW^1, the reduction and the update, by parameter
 * ranges). The plan depends on T and the batch's rows only: a slice's team
 * (the caller and the helpers it could take) runs its parts, a thread
 * taking several when fewer are free, and the sums are added in the
 * plan's order, so the model does not depend on the threads that ran it. */
#define CNNBP_MIN_PART_ROWS 3  /* rows of a part, at least (docs/performance.md) */
#define CNNBP_MAX_PARTS (CNNBP_MAX_HELPERS + 1)
/* The parts a batch of m rows is split into for T threads: T, at most
 * m / CNNBP_MIN_PART_ROWS and CNNBP_MAX_PARTS, at least 1. The one place
 * the split is decided. */
int cnnbp_plan_parts(int threads, ptrdiff_t m);
typedef struct cnnbp_share cnnbp_share;
typedef void (*cnnbp_share_fn)(void *batch, cnnbp_share *s);
struct cnnbp_share {           /* one part of a batch */
    int tid;                   /* the part: 0 (always the caller's) .. parts - 1 */
    int parts;                 /* parts of the batch */
    int phase;                 /* the hand-over (the engine's phases) */
    ptrdiff_t m;               /* the batch's rows */
    ptrdiff_t r0, mr;          /* this part's rows: r0 .. r0 + mr - 1 */
    ptrdiff_t w1[2];           /* its rows of W^1 [w1[0], w1[1]) of a split dW^1 */
    ptrdiff_t u[4];            /* its parameters [u[0], u[1]) and [u[2], u[3]) */
    double out[2];             /* what its job returns to the engine */
    double cpu;                /* CPU seconds spent in its jobs */
    cnnbp_share_fn fn;         /* the job running: fn(batch, this) */
    void *batch;
};
typedef struct {               /* what one of the team's threads runs */
    cnnbp_share *share;        /* parts tid, tid + stride, ... < parts */
    int tid, stride, parts;
} cnnbp_turn;
typedef struct {
    ptrdiff_t n_in, n1;        /* the widths of W^1 */
    ptrdiff_t n_params;
    ptrdiff_t g0;              /* parts' sums start at parameter g0 (0, or n_in n1:
                                  dW^1 split by rows in phase 1) */
    int csr;                   /* X is CSR: dW^1 is one pass, part 0's */
    int plan;                  /* the plan's parts for a full batch */
    int asked;                 /* helpers were asked for (and must be released) */
    int got;                   /* helpers held */
    int ranged;                /* parts the shares' ranges were made for */
    cnnbp_share *share;        /* plan shares */
    cnnbp_turn *turn;          /* got + 1 threads' turns */
    double shared;             /* seconds of the shared hand-overs */
    double cpu;                /* out of cnnbp_team_end: CPU seconds of its threads */
    int cancelled;             /* the batch is dropped (cnnbp_team_cancel) */
    int ids[CNNBP_MAX_HELPERS];
} cnnbp_team;
/* A team for a slice of an epoch whose batches are split into at most
 * `plan` parts: takes up to min(want, plan - 1) helpers (as
 * cnnbp_helpers_acquire); returns the team's threads (1 + helpers), or 0
 * when no memory for its records. Every call is paired with
 * cnnbp_team_end. */
int cnnbp_team_begin(cnnbp_team *t, int plan, int want, ptrdiff_t n_in, ptrdiff_t n1,
                     ptrdiff_t n_params, ptrdiff_t g0, int csr);
/* Splits a batch of m rows into its parts, cnnbp_plan_parts(plan, m), and
 * returns how many. */
int cnnbp_team_split(cnnbp_team *t, ptrdiff_t m);
/* fn(batch, share k), k = 0..parts - 1, for the hand-over `phase`, on the
 * team's threads: thread j (0: the caller) runs parts j, j + threads, ...
 * in turn; returns when all are done (t->shared adds the seconds of
 * hand-overs on more than one thread). */
void cnnbp_team_run(cnnbp_team *t, int parts, int phase, cnnbp_share_fn fn,
                    void *batch);
void cnnbp_team_end(cnnbp_team *t);
/* Drop the batch under way: its parts stop where they see it (Ctrl-C in a
 * large batch); set until the team ends. Any thread may call either. */
void cnnbp_team_cancel(cnnbp_team *t);
int cnnbp_team_cancelled(const cnnbp_team *t);
#define CNNBP_DECLARE_TEAM(T, S)                                               \
    /* Phase 1's reduction: g[i] += the other parts' sums over s's ranges,  \
     * i >= lo (the parameters below g0 and lo the parts do not sum:        \
     * a split dW^1, the engine's tiles) (sums: part k's, k > 0, at         \
     * (k - 1) (n_params - g0), parameter i at [i - g0]). */                \
    void cnnbp_team_reduce_##S(const cnnbp_team *t, const cnnbp_share *s,      \
                               ptrdiff_t lo, const T *sums, T *g);
CNNBP_DECLARE_TEAM(float, f32)
CNNBP_DECLARE_TEAM(double, f64)

/* A one-row prediction: how its products run (cnnbp_row_mode). */
enum { CNNBP_ROW_BATCH, CNNBP_ROW_ALONE, CNNBP_ROW_SHARED };
/* BATCH (BLAS on the block) unless the network's largest W^l takes bytes in
 * [lo, hi] and two cores and threads are there; then SHARED when a helper
 * is free (then held, its id in *helper) and awake, else ALONE (a helper
 * found asleep is woken for the next row). */
int cnnbp_row_mode(ptrdiff_t largest_bytes, ptrdiff_t lo, ptrdiff_t hi, int *helper);
typedef void (*cnnbp_range_fn)(void *ctx, ptrdiff_t k0, ptrdiff_t k1);
/* fn(ctx, n / 2, n) on `helper` while this thread runs fn(ctx, 0, n / 2). */
void cnnbp_split_inputs(int helper, ptrdiff_t n, cnnbp_range_fn fn, void *ctx);

/* Threads in lockstep are as fast as the slowest: on a machine busy with
 * other work, one waiting for a core holds up the rest, and fewer threads
 * finish sooner. When a slice had more threads than the process has
 * cores (T forced above them), the next slices take as many as there are
 * cores; when its threads ran less than LOCKSTEP_EFFICIENCY of its
 * hand-overs' time, one helper fewer. Either way they try one more (up to
 * the cores) after PROBE_SECONDS, a wait that doubles (up to 64 x) while
 * the try fails; a try that runs well restores the number. */
#define CNNBP_LOCKSTEP_EFFICIENCY 0.6
#define CNNBP_PROBE_SECONDS 0.25
typedef struct {
    int cap;                   /* helpers the slices may ask for (-1: all) */
    double probe_at;           /* when to try one more (CLOCK_MONOTONIC) */
    double probe_every;        /* seconds between such tries */
} cnnbp_lockstep;
void cnnbp_lockstep_init(cnnbp_lockstep *l);
/* Helpers the next slice asks for, `wanted` at most. */
int cnnbp_lockstep_helpers(const cnnbp_lockstep *l, int wanted);
/* Learn from a slice that had `had` helpers, its threads spending `cpu`
 * CPU seconds in `seconds` of shared hand-overs. */
void cnnbp_lockstep_learn(cnnbp_lockstep *l, int wanted, int had, double cpu,
                          double seconds);

#endif /* CNNBP_PARALLEL_H */
