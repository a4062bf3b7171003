/*
 * team.c -- the parallel layer: how T threads share a training batch and a
 * one-row prediction, called by the plan (_plan.pyx) alone. The mathematics
 * (_passes.pyx) takes row ranges and parameter ranges and knows no threads;
 * this file decides the ranges, runs them on the caller and its helpers
 * (pool.c), reduces the per-thread gradient sums, and learns when threads in
 * lockstep wait for cores taken by other work.
 *
 * The plan: a batch of m rows is split into cnnbp_plan_parts(T, m) parts,
 * a number fixed by T and m alone. Part k's rows, its rows of W^1 and its
 * parameter ranges follow from k and the number of parts; its gradient
 * sums go to a buffer of its own; the reduction adds the parts' sums in
 * the order of k. A team runs the parts on the threads it has, a thread
 * taking several in turn when fewer are free (other fits, a busy machine,
 * the back-off), so for a given T the model is the same, to the bit,
 * whichever threads ran it.
 *
 * A shared batch takes two hand-overs (cnnbp_team_run), whatever the depth
 * (the engine adds two more at each batch-normalised layer, where it
 * combines the parts' statistics, and one before them to gather the batch's
 * rows and one for each first layer wider than the batch that it makes by
 * column tiles, each part its columns of W^l over all the rows, and one
 * after them for each such layer's delta, back; or one before them for a
 * narrow first layer of many inputs that it makes by blocks of input
 * features, each part a block of rows of W^1 over all the rows):
 *   rows     each part takes its rows r0..r0 + mr - 1 forward and back,
 *            summing their gradient in a buffer of its own (dW^1 of a large
 *            first layer and the dW^l of column tiles excepted: see the
 *            engine's g0 and tiles);
 *   update   each computes its rows w1 of dW^1 (when excepted), adds the
 *            others' sums to its parameter ranges u (cnnbp_team_reduce_*)
 *            and updates them: the reduction and the update split by
 *            parameter ranges, each part its own slice (LIBXSMM's
 *            fully-connected layers split their weight gradient likewise).
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels.h"
#include "parallel.h"

/* The first row of W^1 in part k's ranges (part `parts`: n_0, the end):
 * equal shares; CSR's all part 0's, whose dW^1 is one pass over the sparse
 * rows. */
static ptrdiff_t w1_row(const cnnbp_team *t, int k, int parts)
{
    if (k == 0)
        return 0;
    if (t->csr || k >= parts)
        return t->n_in;
    return t->n_in * k / parts;
}

/* Each part's rows of W^1 (those of dW^1 it computes when g0 > 0) and its
 * parameter ranges: those rows of W^1 and an equal share of the parameters
 * after W^1, cut at multiples of 16 values (cache lines); together, every
 * parameter once. */
static void make_ranges(cnnbp_team *t, int parts)
{
    ptrdiff_t n_w1 = t->n_in * t->n1, rest = t->n_params - n_w1;
    for (int k = 0; k < parts; k++) {
        cnnbp_share *s = &t->share[k];
        s->w1[0] = w1_row(t, k, parts);
        s->w1[1] = w1_row(t, k + 1, parts);
        s->u[0] = s->w1[0] * t->n1;
        s->u[1] = s->w1[1] * t->n1;
        s->u[2] = n_w1 + ((rest * k / parts) & ~(ptrdiff_t)15);
        s->u[3] = k == parts - 1 ? t->n_params
                                 : n_w1 + ((rest * (k + 1) / parts) & ~(ptrdiff_t)15);
    }
    t->ranged = parts;
}

int cnnbp_plan_parts(int threads, ptrdiff_t m)
{
    ptrdiff_t most = m / CNNBP_MIN_PART_ROWS;
    if (most > CNNBP_MAX_PARTS)
        most = CNNBP_MAX_PARTS;
    if (threads > most)
        threads = (int)most;
    return threads > 1 ? threads : 1;
}

int cnnbp_team_begin(cnnbp_team *t, int plan, int want, ptrdiff_t n_in, ptrdiff_t n1,
                     ptrdiff_t n_params, ptrdiff_t g0, int csr)
{
    memset(t, 0, offsetof(cnnbp_team, ids));
    t->n_in = n_in;
    t->n1 = n1;
    t->n_params = n_params;
    t->g0 = g0;
    t->csr = csr;
    t->plan = plan = plan > 1 ? (plan < CNNBP_MAX_PARTS ? plan : CNNBP_MAX_PARTS) : 1;
    if (want > plan - 1)
        want = plan - 1;
    t->asked = want > 0;
    if (t->asked)
        t->got = cnnbp_helpers_acquire(want, t->ids);
    t->share = calloc((size_t)plan, sizeof(cnnbp_share));
    t->turn = calloc((size_t)t->got + 1, sizeof(cnnbp_turn));
    if (t->share == NULL || t->turn == NULL) {  /* no memory for its records */
        cnnbp_team_end(t);
        return 0;
    }
    for (int k = 0; k < plan; k++)
        t->share[k].tid = k;
    return t->got + 1;
}

int cnnbp_team_split(cnnbp_team *t, ptrdiff_t m)
{
    int parts = cnnbp_plan_parts(t->plan, m);
    for (int k = 0; k < parts; k++) {
        cnnbp_share *s = &t->share[k];
        s->parts = parts;
        s->m = m;
        s->r0 = m * k / parts;
        s->mr = m * (k + 1) / parts - s->r0;
    }
    if (parts != t->ranged)
        make_ranges(t, parts);
    return parts;
}

/* What a thread runs in a hand-over: its parts in turn, their CPU time
 * counted. */
static void turn_job(void *arg)
{
    cnnbp_turn *r = arg;
    double c0 = cnnbp_seconds(CLOCK_THREAD_CPUTIME_ID);
    for (int k = r->tid; k < r->parts; k += r->stride)
        r->share[k].fn(r->share[k].batch, &r->share[k]);
    r->share[r->tid].cpu += cnnbp_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
}

void cnnbp_team_run(cnnbp_team *t, int parts, int phase, cnnbp_share_fn fn,
                    void *batch)
{
    int threads = parts < t->got + 1 ? parts : t->got + 1;
    for (int k = 0; k < parts; k++) {
        t->share[k].phase = phase;
        t->share[k].fn = fn;
        t->share[k].batch = batch;
    }
    for (int j = 0; j < threads; j++)
        t->turn[j] = (cnnbp_turn){t->share, j, threads, parts};
    if (threads == 1) {  /* the caller alone: not a hand-over, not timed */
        turn_job(&t->turn[0]);
        return;
    }
    double begin = cnnbp_seconds(CLOCK_MONOTONIC);
    for (int j = 1; j < threads; j++)
        cnnbp_helper_post(t->ids[j - 1], turn_job, &t->turn[j]);
    turn_job(&t->turn[0]);
    for (int j = 1; j < threads; j++)
        cnnbp_helper_wait(t->ids[j - 1]);
    t->shared += cnnbp_seconds(CLOCK_MONOTONIC) - begin;
}

void cnnbp_team_end(cnnbp_team *t)
{
    if (t->asked)
        cnnbp_helpers_release(t->got, t->ids);
    t->cpu = 0;
    if (t->share != NULL)
        for (int k = 0; k < t->plan; k++)
            t->cpu += t->share[k].cpu;
    free(t->share);
    free(t->turn);
    t->share = NULL;
    t->turn = NULL;
    t->asked = 0;
}

void cnnbp_team_cancel(cnnbp_team *t)
{
    __atomic_store_n(&t->cancelled, 1, __ATOMIC_RELAXED);
}

int cnnbp_team_cancelled(const cnnbp_team *t)
{
    return __atomic_load_n(&t->cancelled, __ATOMIC_RELAXED);
}

/* g[i] += the other parts' sums of parameter i, over s's ranges from
 * parameters lo and g0 on; part k's sums (k > 0) are at sums + (k - 1)
 * (n_params - g0), parameter i at [i - g0]. */
#define CNNBP_REDUCE(T, S)                                                     \
    void cnnbp_team_reduce_##S(const cnnbp_team *t, const cnnbp_share *s,     \
                               ptrdiff_t lo, const T *sums, T *g)              \
    {                                                                          \
        ptrdiff_t size = t->n_params - t->g0;                                  \
        if (lo < t->g0)                                                        \
            lo = t->g0;                                                        \
        for (int r = 0; r < 4; r += 2) {                                       \
            ptrdiff_t a = s->u[r] > lo ? s->u[r] : lo, hi = s->u[r + 1];       \
            for (int j = 0; hi > a && j < s->parts - 1; j++)                   \
                cnnbp_add_##S(hi - a, sums + j * size + (a - t->g0), g + a);   \
        }                                                                      \
    }
CNNBP_REDUCE(float, f32)
CNNBP_REDUCE(double, f64)

/* One dense row's product split by inputs: fn(ctx, h, n) on the helper
 * while this thread runs fn(ctx, 0, h), h = n / 2. */
typedef struct {
    cnnbp_range_fn fn;
    void *ctx;
    ptrdiff_t k0, k1;
} range_job;

static void run_range(void *arg)
{
    range_job *j = arg;
    j->fn(j->ctx, j->k0, j->k1);
}

void cnnbp_split_inputs(int helper, ptrdiff_t n, cnnbp_range_fn fn, void *ctx)
{
    range_job job = {fn, ctx, n / 2, n};
    cnnbp_helper_post(helper, run_range, &job);
    fn(ctx, 0, n / 2);
    cnnbp_helper_wait(helper);
}

int cnnbp_row_mode(ptrdiff_t largest_bytes, ptrdiff_t lo, ptrdiff_t hi, int *helper)
{
    static atomic_int cores;  /* the process's, counted once (0: not yet) */
    if (atomic_load(&cores) == 0)
        atomic_store(&cores, cnnbp_available_cores());
    if (atomic_load(&cores) < 2 || cnnbp_get_num_threads() < 2 || largest_bytes < lo
        || largest_bytes > hi)
        return CNNBP_ROW_BATCH;
    if (!cnnbp_helpers_acquire(1, helper)) {
        cnnbp_helpers_release(0, helper);
        return CNNBP_ROW_ALONE;
    }
    if (cnnbp_helper_awake(*helper))
        return CNNBP_ROW_SHARED;
    cnnbp_helpers_release(1, helper);
    return CNNBP_ROW_ALONE;
}

/* Load adaptation (cnnbp_lockstep). */
void cnnbp_lockstep_init(cnnbp_lockstep *l)
{
    l->cap = -1;
    l->probe_at = 0;
    l->probe_every = CNNBP_PROBE_SECONDS;
}

int cnnbp_lockstep_helpers(const cnnbp_lockstep *l, int wanted)
{
    if (l->cap < 0 || l->cap >= wanted)
        return wanted;
    /* a try above the cores could not run better (cnnbp_lockstep_learn) */
    if (l->cap + 1 < cnnbp_available_cores()
        && cnnbp_seconds(CLOCK_MONOTONIC) >= l->probe_at)
        return l->cap + 1;
    return l->cap;
}

void cnnbp_lockstep_learn(cnnbp_lockstep *l, int wanted, int had, double cpu,
                          double seconds)
{
    if (had < 1 || seconds <= 0)
        return;
    double now = cnnbp_seconds(CLOCK_MONOTONIC);
    /* threads above the cores never run at once: the parts they would take
     * run sooner on the threads that have a core, so down to those at once */
    int cores = cnnbp_available_cores();
    int cap = had + 1 > cores ? cores - 1
              : cpu < CNNBP_LOCKSTEP_EFFICIENCY * (had + 1) * seconds ? had - 1 : -2;
    if (cap > -2) {
        l->cap = cap;
        l->probe_at = now + l->probe_every;
        l->probe_every = 2 * l->probe_every < 64 * CNNBP_PROBE_SECONDS
                             ? 2 * l->probe_every : 64 * CNNBP_PROBE_SECONDS;
    } else if (l->cap >= 0 && had > l->cap) {  /* a try that ran well */
        l->cap = had >= wanted ? -1 : had;
        l->probe_every = CNNBP_PROBE_SECONDS;
        l->probe_at = now + l->probe_every;
    }
}
