# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The typed core of cnn_bp: `Engine` owns every buffer of one network and
runs the forward pass, the backward pass and the optimizer update without the
GIL, a whole epoch of mini-batches per call.

Layering, calls going one way:
    C kernels (csrc/: element-wise loops, no Python, no allocation; dropout's
        masks from a counter-based generator, SplitMix64)
    -> the passes (_passes.pyx, an extension of its own: the nogil
        mathematics over row ranges and parameter ranges, which knows no
        threads, and the private BLAS its products run on)
    -> the plan (_plan.pyx, an extension of its own: the passes over many
        rows run on a team of threads, the one caller of the parallel layer,
        csrc/team.c over csrc/pool.c's helper threads)
    -> this engine (owns the buffers and checks what it is given, _checks.pyx;
        runs the passes nogil: through the plan, or directly those of one
        thread)
    -> the network binding (cnn_bp/_network.py: parameters <-> engine, data
        checked once), the trainer (_training.py: RNG, the epoch loop,
        warnings) and the estimators (_mlp.py: validation, attributes)

Mathematics, layers l = 1..L, a mini-batch of m rows stored row-major:
    forward    Z^l = A^{l-1} W^l + b^l,   A^l = f(Z^l),   A^0 = X
    output     delta^L = A^L - Y           (canonical activation/loss pairs)
    backward   delta^l = (delta^{l+1} (W^{l+1})^T) * f'(A^l)
    gradients  dC/dW^l = ((A^{l-1})^T delta^l + alpha W^l) / s
               dC/db^l = sum_rows(delta^l) / s,    s = sum of sample weights
f' is read off the stored A^l where that is exact, so Z^l is kept only for
the activations whose derivative needs it (gelu, gelu_tanh, silu:
cnnbp_derivative_needs_z) and for inspection; otherwise each block holds Z^l
only until the activation overwrites it in place. A hidden layer may add
batch normalisation of A^{l-1} W^l before f and inverted dropout of A^l
after it (csrc/layers.c; training passes draw masks and use batch statistics,
prediction uses neither dropout nor batch statistics).

Threads: the plan (_plan.pyx) splits each batch, and each block of L-BFGS's
full batch, into T parts, run by the caller and up to T - 1 helper threads;
the model depends on T alone. Each thread's products run on that thread
alone (w.single: a private OpenBLAS kept at one thread,
cnn_bp._threads.thread_blas; the process's BLAS and its thread count, a
process-wide setting, are never touched). Matrix products of a 200-row batch
are too small for BLAS's own threads to pay; this way the element-wise work,
the row gathering and the optimizer run on every core too.

Memory: one flat parameter buffer [W^1..W^L, b^1..b^L]; `coefs` and
`intercepts` are numpy views into it. The gradient and optimizer-state
buffers have the same layout. Every array handed in is checked (dtype,
shape, contiguity, index range) before a pointer is taken.
"""
import os
import weakref

import numpy as np

from ._checks import (
    _check_block, _check_order, _check_slice, _engine_arguments, _parameter_layout,
    aligned_empty, check_solver,
)
from ._registry import HYPERPARAMETERS

cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from libc.math cimport INFINITY
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t
from libc.string cimport memset

from ._checks cimport TrainingData, _data, _dense_rows, _set_rows
from ._kernels cimport cnnbp_derivative_needs_z
from ._passes cimport (
    _width, blas_loaded, blas_enter, blas_leave, _full_loss, _objective, _trace,
)
from ._plan cimport (
    BackOff, Slice, _by_inputs, _epoch, _full_gradient, _now, _predict, plan,
)

cnp.import_array()


# Rows per block when predicting: as many as PREDICT_BYTES hold of input
# rows and their activations (8 MiB stay in the L3 cache, so the check of a
# block's Z^1 for NaN and inf reads it there, and the next layer's product
# too), and at least PREDICT_MIN_ROWS for efficient products; the work
# memory stays bounded whatever the number of rows.
PREDICT_BYTES = 8 << 20
PREDICT_MIN_ROWS = 256
# Multiply-adds between two looks for Ctrl-C (a few milliseconds of work):
# a prediction returns to Python after about this many, and a large
# training batch is taken forward and back in blocks of about this many rows
# x parameters, the caller looking for a pending signal between two.
SIGNAL_WORK = 1 << 26

# Rows per block of the full-batch loss and gradient (L-BFGS): large enough
# for efficient products, small enough to bound the work memory.
FULL_BATCH_ROWS = 4096

# A shared batch's threads each sum the gradient of their own rows, each
# helper in a buffer of its own, so that a batch takes two hand-overs
# whatever the depth. dW^1 larger than this is the exception: summing it in
# every buffer would add its size per thread to a fit's memory, so it is
# split by rows after the backward pass instead (every part's delta^1 is
# there once the first hand-over ends).
SHARED_W1_BYTES = 1 << 18


# Engines a training pass runs on now. A forked child has none of its
# parent's threads, so their passes do not run there: the child frees the
# buffers they held (os.register_at_fork), and may train those engines.
_passes_running = weakref.WeakSet()


def _free_in_child():
    for engine in list(_passes_running):
        (<Engine> engine)._busy = False
    _passes_running.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_in_child)


cdef class Engine:
    """All buffers of one multi-layer perceptron and the compiled passes over them.

    Parameters
    ----------
    layer_units : sequence of int
        Widths ``(n_features, n_hidden_1, ..., n_outputs)``, each >= 1.
    hidden_activation : int or sequence of int
        Code of the hidden activation (``cnn_bp._registry.activation_code``),
        one for all hidden layers or one per layer.
    loss : int
        Code of the loss (``cnn_bp._registry.loss_code``); it fixes the output
        activation (identity, softmax, logistic or exp).
    dtype : {numpy.float32, numpy.float64}
        Element type of every buffer.
    negative_slope : float
        leaky_relu's slope for z < 0.
    huber_delta : float
        The huber loss's d.
    batch_norm : bool
        Batch-normalise every hidden layer (Ioffe & Szegedy 2015): its b^l
        becomes the shift beta, and a scale gamma^l (initially 1) follows
        the biases in `params`.
    dropout : float or sequence of float
        Dropout rate of each hidden layer (one for all, or one per layer),
        in [0, 1); applied by training passes only.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Flat parameters ``[W^1, ..., W^L, b^1, ..., b^L]``, each W^l
        row-major of shape (fan_in, fan_out).
    grads : ndarray of shape (n_params,)
        Gradient of the last pass, same layout.
    coefs, intercepts : tuple of ndarray
        Views of W^l (fan_in, fan_out) and b^l (fan_out,) into `params`.
    batch_norm_scales : tuple of ndarray
        Views of gamma^l (n_l,) of the hidden layers into `params` (empty
        without batch normalisation).
    running : ndarray of shape (2, sum(n_l))
        Batch normalisation's running means (row 0) and variances (row 1),
        unit by unit in layer order (views per layer: `running_means`,
        `running_vars`).
    optimizer_state : ndarray of shape (2, n_params) or None
        sgd: row 0 the velocity; adam: rows m and v.
    last_nogil_interval : tuple of float or None
        (start, end) on ``time.monotonic``'s clock of the last `run_epoch`'s
        GIL-free section, read inside it: intervals of two threads can only
        overlap if neither holds the GIL there.
    last_threads : int
        Threads the last `run_epoch` ran its batches' parts on (1 + the
        helpers it could take; its plan's parts are fixed by T).
    stopped_at : int
        Where the last `run_epoch` stopped: the `start` of the next slice of
        the same epoch, or n_samples when the epoch is complete.
    rows_trained : int
        Rows trained by all `run_epoch` calls of this engine (an epoch's
        n_samples once complete): what a fit interrupted mid-epoch trained.

    Raises
    ------
    ValueError
        Codes the kernels have no case for (_check_codes), widths < 1, or a
        weight matrix too large for BLAS.
    MemoryError
        When parameters, gradient and optimizer state would not fit in RAM.
    TypeError
        A dtype other than float32 or float64.
    """

    def __cinit__(self, layer_units, hidden_activation, int loss, dtype,
                  double negative_slope=0.01, double huber_delta=1.0,
                  bint batch_norm=False, dropout=0.0):
        cdef ptrdiff_t *lay
        units, codes, dtype = _engine_arguments(layer_units, hidden_activation, loss, dtype,
                                                negative_slope, huber_delta)
        cdef ptrdiff_t L = len(units) - 1
        sizes, n_coefs, n_params, w_off, b_off, blk_off, gamma_off = _parameter_layout(
            units, batch_norm, dtype)
        # layout: units | w_off | b_off | blk_off | gamma_off, one intp array
        self._layout = np.array(units + tuple(w_off) + tuple(b_off) + tuple(blk_off)
                                + tuple(gamma_off), dtype=np.intp)
        lay = <ptrdiff_t *> _data(self._layout)

        self.dtype = dtype
        self._typenum = dtype.num
        self.layer_units = units
        self.params = aligned_empty(n_params, dtype, zero=True)
        self.grads = aligned_empty(n_params, dtype, zero=True)
        self.coefs = tuple(
            self.params[w_off[l]:w_off[l] + sizes[l]].reshape(units[l], units[l + 1])
            for l in range(L))
        self.intercepts = tuple(
            self.params[b_off[l]:b_off[l] + units[l + 1]] for l in range(L))
        if batch_norm:
            self.params[gamma_off[0]:] = 1
        self.net.n_layers = L
        self.net.units = lay
        self.net.w_off = lay + (L + 1)
        self.net.b_off = lay + (2 * L + 1)
        self.net.blk_off = lay + (3 * L + 1)
        self.net.gamma_off = lay + (4 * L + 2)
        self.net.n_coefs = n_coefs
        self.net.n_params = n_params
        self._activation = np.array(codes + (0,), dtype=np.intc)  # never empty
        self.net.activation = <const int *> _data(self._activation)
        self.net.slope = negative_slope
        self.net.huber_delta = huber_delta
        self.net.loss = loss
        self.net.alpha, self.net.alpha_l1 = 0, 0
        self.net.params = _data(self.params)
        self.net.grads = _data(self.grads)
        width = sum(units[1:])
        self.running = np.zeros((2, width), dtype=dtype)
        self.running[1] = 1  # PyTorch's initial running variance
        self.net.running = _data(self.running)
        self._dropout = np.zeros(L, dtype=np.float64)
        self.net.dropout = <const double *> _data(self._dropout)
        self.dropout = dropout
        self._rng = np.zeros(2, dtype=np.uint64)
        self.net.rng = <uint64_t *> _data(self._rng)
        self.solver, self.optimizer_state, self._work, self.last_nogil_interval = (
            None, None, None, None)
        self.stopped_at, self.last_threads, self.rows_trained, self._busy = 0, 1, 0, False
        self._backoff = BackOff()
        memset(&self.opt, 0, sizeof(Optim))
        memset(&self.work, 0, sizeof(Work))

    def holds(self, coefs, intercepts):
        """Whether the lists `coefs` and `intercepts` hold exactly this
        engine's views (`coefs` and `intercepts`, the same objects in the same
        order): the check a model makes before every pass, that no array a
        user assigned has replaced them (in C: a Python loop took several
        times as long)."""
        cdef Py_ssize_t i
        if (type(coefs) is not list or type(intercepts) is not list
                or len(coefs) != len(self.coefs) or len(intercepts) != len(self.intercepts)):
            return False
        for i in range(len(coefs)):
            if coefs[i] is not self.coefs[i] or intercepts[i] is not self.intercepts[i]:
                return False
        return True

    @property
    def hidden_activation(self):
        """Activation codes of the hidden layers, a tuple of length L - 1."""
        return tuple(int(c) for c in self._activation[:self.net.n_layers - 1])

    @property
    def negative_slope(self):
        return self.net.slope

    @property
    def batch_norm(self):
        """Whether the hidden layers are batch-normalised."""
        return self.net.gamma_off[0] >= 0

    def _hidden_views(self, flat):
        """Views of a flat (sum(n_l),) array per hidden layer."""
        units = self.layer_units
        starts = np.cumsum((0,) + units[1:])
        return tuple(flat[starts[l]:starts[l + 1]] for l in range(len(units) - 2))

    @property
    def batch_norm_scales(self):
        """gamma^l of each hidden layer, views into `params` (() without
        batch normalisation)."""
        if not self.batch_norm:
            return ()
        units = self.layer_units
        return tuple(self.params[self.net.gamma_off[l]:self.net.gamma_off[l] + units[l + 1]]
                     for l in range(len(units) - 2))

    @property
    def running_means(self):
        """Running mean of A^{l-1} W^l per hidden layer, views into `running`."""
        return self._hidden_views(self.running[0])

    @property
    def running_vars(self):
        """Running (unbiased) variance of A^{l-1} W^l per hidden layer, views."""
        return self._hidden_views(self.running[1])

    @property
    def dropout(self):
        """Dropout rate of each hidden layer, a tuple of length L - 1."""
        return tuple(float(r) for r in self._dropout[:self.net.n_layers - 1])

    @dropout.setter
    def dropout(self, rates):
        self._idle()
        n_hidden = len(self.layer_units) - 2
        rates = ((float(rates),) * n_hidden if np.ndim(rates) == 0
                 else tuple(float(r) for r in rates))
        if len(rates) != n_hidden:
            raise ValueError(f"{len(rates)} dropout rates for {n_hidden} hidden layers")
        if not all(0 <= r < 1 for r in rates):
            raise ValueError(f"dropout rates must be in [0, 1), got {rates}")
        self._dropout[:self.net.n_layers - 1] = rates

    @property
    def dropout_rng(self):
        """(seed, position) of dropout's SplitMix64 stream: the next mask
        element drawn is output `position` of the stream `seed`."""
        return int(self._rng[0]), int(self._rng[1])

    @dropout_rng.setter
    def dropout_rng(self, state):
        seed, position = state
        self._rng[0] = seed
        self._rng[1] = position

    @property
    def huber_delta(self):
        return self.net.huber_delta

    @property
    def loss(self):
        return self.net.loss

    @property
    def learning_rate(self):
        """Current rate of sgd; the base rate (learning_rate_init, or the
        schedule's) of the other solvers."""
        return self.opt.learning_rate

    @learning_rate.setter
    def learning_rate(self, double value):
        self.opt.learning_rate = value

    @property
    def t(self):
        """Optimizer update steps taken so far."""
        return self.opt.t

    def set_optimizer(self, str solver, double learning_rate, *, clip_norm=None,
                      max_norm=None, state=None, long long t=0, double mu_product=1.0,
                      **hyperparameters):
        """Start a fresh optimizer (zero state) or restore a saved one.

        Parameters
        ----------
        solver : str
            A stochastic solver of ``cnn_bp._registry.SOLVERS``.
        learning_rate : float
            sgd: the current rate; the others: ``learning_rate_init``.
        clip_norm : float or None
            Rescale each gradient to this global L2 norm when larger.
        max_norm : float or None
            After each step, rescale each unit's incoming weights (a column of
            W^l) to this L2 norm when longer.
        state : ndarray of shape (2, n_params), optional
            Saved optimizer state to restore (copied).
        t : int
            Update steps already taken (with `state`).
        mu_product : float
            nadam: the product of its momentum schedule over those steps.
        **hyperparameters
            Settings of ``cnn_bp._registry.HYPERPARAMETERS`` (momentum,
            beta_1, ...); those not given take the registry's defaults.

        Raises
        ------
        ValueError
            An unknown solver, or one the compiled update has no case for.
        TypeError
            A keyword that is not a hyperparameter.
        """
        cdef int kind = check_solver(solver)
        if "nesterov" in hyperparameters:  # its name in files saved by cnn_bp 0.1
            hyperparameters["nesterovs_momentum"] = hyperparameters.pop("nesterov")
        values = {h.name: h.default for h in HYPERPARAMETERS}
        unknown = set(hyperparameters) - set(values)
        if unknown:
            raise TypeError(f"set_optimizer() got unknown hyperparameters {sorted(unknown)}")
        values.update(hyperparameters)
        self._idle()
        cdef ptrdiff_t n = self.net.n_params
        new_state = aligned_empty((2, n), self.dtype, zero=True)
        if state is not None:
            _check_block("optimizer state", state, self.dtype, 2, n)
            new_state[...] = state
        self.optimizer_state = new_state
        self.solver = solver
        self.opt.kind = kind
        self.opt.learning_rate = learning_rate
        self.opt.h = values  # Cython fills the struct from the dict, field by field
        self.opt.clip_norm = 0 if clip_norm is None else clip_norm
        self.opt.max_norm = 0 if max_norm is None else max_norm
        self.opt.t = t
        self.opt.mu_product = mu_product
        self.opt.s1 = _data(new_state)
        self.opt.s2 = _data(new_state[1])

    def optimizer_settings(self):
        """Keyword arguments that `set_optimizer` restores this state from."""
        if self.solver is None:
            return None
        return dict(solver=self.solver, learning_rate=self.opt.learning_rate,
                    clip_norm=self.opt.clip_norm if self.opt.clip_norm > 0 else None,
                    max_norm=self.opt.max_norm if self.opt.max_norm > 0 else None,
                    state=self.optimizer_state, t=self.opt.t,
                    mu_product=self.opt.mu_product, **self.opt.h)

    cdef _set_penalties(self, double alpha, double alpha_l1):
        if not (alpha >= 0 and alpha_l1 >= 0):
            raise ValueError(f"penalties must be >= 0, got alpha={alpha}, "
                             f"alpha_l1={alpha_l1}")
        self.net.alpha = alpha
        self.net.alpha_l1 = alpha_l1

    cdef list _allocate(self, ptrdiff_t cap, Work *w, bint keep_z):
        """Point `w` at new blocks for `cap` rows and return the arrays: A
        and delta; Z where `keep_z` or a derivative needs it; batch norm's
        and dropout's blocks where the network has them. (Rows of X, Y and
        sample weights are the caller's.)"""
        cdef ptrdiff_t width = sum(self.layer_units[1:])
        cdef void **slots[7]
        slots[:] = [&w.a, &w.delta, &w.z, &w.zhat, &w.bn, &w.mask, &w.kept]
        bn = self.batch_norm
        drops = any(self.dropout)
        needs_z = keep_z or any(cnnbp_derivative_needs_z(c) for c in self.hidden_activation)
        sizes = [cap * width, cap * width, cap * width if needs_z else 0,
                 cap * width if bn else 0, 3 * width if bn else 0,
                 cap * width if drops else 0, cap * width if drops else 0]
        memset(w, 0, sizeof(Work))
        w.cap = cap
        arrays = []
        for i, size in enumerate(sizes):
            arrays.append(aligned_empty(size, self.dtype) if size else None)
            if size:
                slots[i][0] = _data(arrays[i])
        return arrays

    cdef _reserve(self, ptrdiff_t cap, bint gather_x, ptrdiff_t shared=0,
                  bint single=False):
        """Work blocks for `cap` rows, kept while large enough (and while the
        dropout they were made for is on); the block that gathers rows of X
        only for shuffled dense X (CSR rows are read in place); with
        `shared` > 0, that many helper parts' partial gradients (w.g2); with
        `single`, products on each thread alone (w.single, through
        cnnbp_thread_blas), else on the process's BLAS and its threads; for
        a batch-normalised network, the parts' sums at its normalised layers
        (w.sums)."""
        units = self.layer_units
        if self.work.cap < cap or (any(self.dropout) and self.work.mask == NULL):
            cap = max(cap, self.work.cap)
            y = aligned_empty(cap * units[len(units) - 1], self.dtype)
            sw = aligned_empty(cap, self.dtype)
            self._work = self._allocate(cap, &self.work, False) + [y, sw]
            self.work.y = _data(y)
            self.work.sw = _data(sw)
        if gather_x and self.work.x == NULL:
            x = aligned_empty(self.work.cap * units[0], self.dtype)
            self._work.append(x)
            self.work.x = _data(x)
        if shared > self.work.n_g2:
            n_w1 = units[0] * units[1]
            self.work.g0 = n_w1 if n_w1 * self.dtype.itemsize > SHARED_W1_BYTES else 0
            self._g2 = aligned_empty(shared * (self.params.size - self.work.g0),
                                     self.dtype)  # (an older, smaller one is freed)
            self.work.g2 = _data(self._g2)
            self.work.n_g2 = shared
            if self.batch_norm:  # each part's 2 n_l sums at a normalised layer
                widest = max(units[1:len(units) - 1], default=1)
                stride = (2 * widest + 15) // 16 * 16  # whole cache lines
                self._sums = aligned_empty((shared + 1) * stride, self.dtype)
                self.work.sums = _data(self._sums)
                self.work.sums_stride = stride
        if _by_inputs(units[0], units[1], shared + 1, cap) and (
                self.work.n_kz <= shared or self.work.kz_cap < cap):
            # Z^1 of batches of up to cap rows by blocks of input features
            # (_plan._inputs): a block of cap rows for each of shared + 1 parts
            self._kz = aligned_empty((shared + 1) * cap * units[1], self.dtype)
            self.work.kz = _data(self._kz)
            self.work.n_kz, self.work.kz_cap = shared + 1, cap
        self.work.single = single

    cdef ptrdiff_t _check_data(self, Rows *rows, X, Y, sample_weight,
                               list keep) except -1:
        n = _set_rows(rows, X, self.dtype, self.layer_units[0], keep)
        n_out = self.layer_units[len(self.layer_units) - 1]
        if isinstance(Y, np.ndarray) and Y.dtype == np.uint8:  # 0/1 targets as bytes
            _check_block("Y", Y, np.uint8, n, n_out)
            if Y.size and Y.max() > 1:
                raise ValueError("byte targets Y must be 0 or 1")
        else:
            _check_block("Y", Y, self.dtype, n, n_out)
        if sample_weight is not None:
            _check_block("sample_weight", sample_weight, self.dtype, n, -1)
        return n

    def training_data(self, X, Y, sample_weight, order=None, bint shuffle=False):
        """Training rows for this engine, checked once: what `train` takes.

        A fit checks its data here once, not at each slice of an epoch (a
        CSR matrix's structure and byte targets are scanned in full).

        Parameters
        ----------
        X, Y, sample_weight : as for `run_epoch`
        order : ndarray of shape (n_samples,), dtype intp, or None
            A row order of the caller's (checked here), or None.
        shuffle : bool
            With order None: the data own a row order, ``arange(n_samples)``
            at first, that `TrainingData.shuffle` permutes; False takes rows
            as stored.

        Returns
        -------
        data : TrainingData

        Raises
        ------
        TypeError, ValueError
            Data the engine cannot take (as `run_epoch`).
        """
        cdef TrainingData data = TrainingData.__new__(TrainingData)
        data.keep = []
        cdef ptrdiff_t n = self._check_data(&data.rows, X, Y, sample_weight, data.keep)
        if order is not None:
            _check_order(order, n)
        elif shuffle:
            order = np.arange(n, dtype=np.intp)
        data.n_samples, data.Y, data.sample_weight, data.order = n, Y, sample_weight, order
        data.dtype, data.layer_units = self.dtype, self.layer_units
        return data

    def run_epoch(self, X, Y, sample_weight, order, Py_ssize_t batch_size,
                  double alpha, double alpha_l1=0.0, int n_threads=1,
                  Py_ssize_t start=0, double total=0.0, seconds=None):
        """One epoch of mini-batch training, or a time slice of one, in one
        nogil call: ``train(training_data(X, Y, sample_weight, order), ...)``.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_features), engine dtype
            Dense X must be C-contiguous and aligned; CSR X is read in place
            (never densified).
        Y : ndarray of shape (n_samples, n_outputs), C-contiguous, engine dtype
            Targets: one-hot or indicator columns for classification (or
            those as uint8 0/1 bytes).
        sample_weight : ndarray of shape (n_samples,) or None
        order : ndarray of shape (n_samples,), dtype intp, or None
            Row order (a permutation from the estimator's random state);
            None takes rows as stored, without copying them.
        batch_size, alpha, alpha_l1, n_threads, start, total, seconds
            As for `train`.

        Returns
        -------
        total : float
            As `train` returns it.

        Raises
        ------
        RuntimeError, ValueError
            As `training_data` and `train` raise them.
        """
        return self.train(self.training_data(X, Y, sample_weight, order), batch_size, alpha,
                          alpha_l1, n_threads, start, total, seconds)

    def train(self, TrainingData data not None, Py_ssize_t batch_size, double alpha,
              double alpha_l1=0.0, int n_threads=1, Py_ssize_t start=0, double total=0.0,
              seconds=None):
        """An epoch of mini-batch training over `data`, or a time slice of
        one, in one nogil call. Each batch is split into T parts of rows (at
        most one per `_plan.MIN_PART_ROWS` rows: the plan, fixed by T and
        `batch_size`), run by this thread and up to T - 1 free helper threads;
        for a given T the parameters are the same to the bit whichever
        threads ran the parts (and those of T = 1 to round-off).

        Parameters
        ----------
        data : TrainingData
            This engine's `training_data`, in its row order (if it has one).
        batch_size : int
            Rows per mini-batch (the last batch may be smaller), >= 1.
        alpha, alpha_l1, n_threads : float, float, int
            L2 and L1 penalties; T >= 1, the threads to share batches among
            (T > 1 needs the private one-thread BLAS).
        start : int
            The first batch's position in the order: 0 or the last `stopped_at`.
        total : float
            The previous calls' total of the same epoch, added to.
        seconds : float or None
            Return after the first batch that ends this many seconds after
            the call began (None: at the end of the epoch), `stopped_at`
            telling where to go on: slices let the caller see Ctrl-C (one
            batch with more threads than cores, then the back-off's cores).

        Returns
        -------
        total : float
            `total` plus, over this call's batches, batch loss x batch rows
            (over an epoch, / n_samples: scikit-learn's ``loss_``).

        Raises
        ------
        RuntimeError, ValueError
            Another thread training with this engine, or no optimizer set;
            data checked for another network, or a bad start, batch size or T.
        """
        if self.solver is None:
            raise RuntimeError("set_optimizer must be called before run_epoch")
        if data.dtype != self.dtype or data.layer_units != self.layer_units:
            raise ValueError("these training data were checked for another network")
        cdef ptrdiff_t n = data.n_samples
        _check_slice(n, batch_size, n_threads, start)
        cdef double budget = np.inf if seconds is None else float(seconds)
        batch_size = min(batch_size, n)
        cdef int parts = plan(n_threads, batch_size)
        cdef bint single = blas_loaded()
        self._claim()
        try:
            self._reserve(batch_size, data.order is not None and data.rows.x != NULL,
                          parts - 1, single)
            self._set_penalties(alpha, alpha_l1)
            self._enter_blas(single, parts)
            try:
                total = self._run(&data.rows, data.Y, data.sample_weight, data.order,
                                  n, batch_size, parts, start, total, budget)
            finally:
                if single:
                    blas_leave(parts)
        finally:
            self._release()
        return total

    cdef _enter_blas(self, bint single, int parts):
        """The private BLAS's work buffers for `parts` threads, mapped now:
        where memory lacks, OpenBLAS would end the process mid-pass."""
        if single and not blas_enter(parts):
            raise MemoryError(
                f"not enough memory for the BLAS work buffers of {parts} training "
                f"threads (about 100 MiB of address space each, mapped once per "
                f"process): free memory, or train on fewer threads "
                f"(threadpoolctl.threadpool_limits)")

    cdef _slice_ended(self, Slice *sl):
        """After a pass: record its threads, then raise what a signal raised
        in it or let the back-off learn from it (BackOff.learn)."""
        self.last_threads = sl.used
        self._backoff.learn(sl)

    cdef double _run(self, const Rows *x, Y, sample_weight, order, ptrdiff_t n,
                     ptrdiff_t batch_size, int parts, ptrdiff_t start,
                     double total, double budget) except? -1:
        """run_epoch's nogil part, on checked arguments and reserved blocks."""
        cdef const ptrdiff_t *rows = NULL if order is None else <ptrdiff_t *> _data(order)
        cdef void *y = _data(Y)
        cdef bint y_u8 = Y.dtype == np.uint8
        cdef void *sw = NULL if sample_weight is None else _data(sample_weight)
        cdef double t0, t1
        cdef Slice sl = self._backoff.slice(&self.net, parts, budget, SIGNAL_WORK)
        sl.start, sl.total = start, total
        cdef bint double = self.dtype == np.float64
        with nogil:
            t0 = _now()
            if double:
                _epoch(&self.net, &self.opt, &self.work, x, y, y_u8, <double *> sw, rows,
                       n, batch_size, &sl)
            else:
                _epoch(&self.net, &self.opt, &self.work, x, y, y_u8, <float *> sw, rows,
                       n, batch_size, &sl)
            t1 = _now()
        self.last_nogil_interval = (t0, t1)
        self.rows_trained += sl.start - start
        self.stopped_at = sl.start
        self._slice_ended(&sl)
        return sl.total

    cdef _claim(self):
        """Take the training buffers for this thread's pass (after _idle);
        a forked child, where the pass does not run, frees them
        (_free_in_child)."""
        self._idle()
        self._busy = True  # under the GIL since _idle: no other thread between
        _passes_running.add(self)

    cdef _release(self):
        self._busy = False
        _passes_running.discard(self)

    cdef _idle(self):
        """Raise if a training pass runs on this engine's buffers (in another
        thread): a second one, or a change of optimizer, dropout or block
        sizes, would reallocate or free memory that pass is reading."""
        if self._busy:
            raise RuntimeError(
                "this network is being trained in another thread; its training "
                "buffers, optimizer and dropout cannot change until that ends")

    def loss_gradient(self, X, Y, sample_weight, double alpha, params=None,
                      double alpha_l1=0.0, bint gradient=True, bint training=False,
                      bint finish=True, int n_threads=1):
        """Full-batch loss; the gradient is left in `grads`.

        Parameters
        ----------
        X, Y, sample_weight : as in `run_epoch`.
        alpha : float
            L2 penalty.
        params : ndarray of shape (n_params,), optional
            Copied into `params` first (L-BFGS passes its iterate here).
        alpha_l1 : float
            L1 penalty.
        gradient : bool
            False: the loss only (a forward pass; `grads` is left alone).
        training : bool
            True: a training step's loss, with dropout masks drawn (the stream
            moves on; set `dropout_rng` to repeat them) and batch statistics
            (of blocks of up to 4096 rows; the running estimates move), the
            only gradient of a network with dropout or batch normalisation.
            False: the loss the model predicts with.
        finish : bool
            False: the sums instead, ``(sum_i sw_i C_i, sum_i sw_i)``, and the
            gradient's sums over the rows (no penalty, not divided) in
            `grads`: sums over parts of the data add up, and
            `finish_loss_gradient` gives one call's result (cnn_bp.dask).
        n_threads : int
            T >= 1: each block of rows of the gradient's pass is split into
            the plan's T parts, as `train` splits a batch, run by this thread
            and up to T - 1 helpers (T > 1 needs the private one-thread
            BLAS). Every product runs on the private one-thread BLAS when it
            loaded, never on the process's BLAS threads.

        Returns
        -------
        loss : float
            ``sum_i sw_i C_i / s + alpha / 2 * ||W||^2 / s + alpha_l1 ||W||_1 / s``
            (with finish=False: the tuple of sums above).

        Raises
        ------
        ValueError
            For a gradient of a network with dropout or batch normalisation
            without `training`, data the engine cannot take, or a bad T.
        KeyboardInterrupt
            Ctrl-C in the main thread during the gradient's pass (the
            gradient is then not computed).
        """
        if gradient and not training and (self.batch_norm or any(self.dropout)):
            raise ValueError("a network with dropout or batch normalisation has a "
                             "gradient only for training passes (training=True)")
        cdef Rows x
        cdef list keep = []
        cdef ptrdiff_t n = self._check_data(&x, X, Y, sample_weight, keep)
        cdef ptrdiff_t cap = min(n, FULL_BATCH_ROWS)
        cdef int parts = plan(n_threads, cap) if gradient else 1
        cdef bint single = blas_loaded()
        cdef double data_loss, weight
        self._claim()
        try:
            if params is not None:
                self.params[...] = np.asarray(params).reshape(self.params.shape)
            self._reserve(cap, False, parts - 1, single)
            if gradient and n > cap and self._acc is None:
                self._acc = aligned_empty(self.params.size, self.dtype)
            self._set_penalties(alpha, alpha_l1)
            self._enter_blas(single, parts)
            try:
                data_loss = self._full_pass(&x, Y, sample_weight, n, gradient, training,
                                            parts, &weight)
            finally:
                if single:
                    blas_leave(parts)
        finally:
            self._release()
        if not finish:
            return data_loss, weight
        return self.finish_loss_gradient(data_loss, weight, alpha, alpha_l1, gradient)

    cdef double _full_pass(self, const Rows *x, Y, sample_weight, ptrdiff_t n,
                           bint gradient, bint training, int parts,
                           double *weight) except? -1:
        """loss_gradient's nogil part (_full_gradient, or _full_loss for the
        loss alone), on checked data and reserved blocks."""
        cdef void *y = _data(Y)
        cdef bint y_u8 = Y.dtype == np.uint8
        cdef void *sw = NULL if sample_weight is None else _data(sample_weight)
        cdef void *acc = NULL if self._acc is None else _data(self._acc)
        cdef bint double = self.dtype == np.float64
        cdef double data_loss
        cdef Slice sl = self._backoff.slice(&self.net, parts, INFINITY, SIGNAL_WORK)
        with nogil:
            if not gradient and double:
                data_loss = _full_loss(&self.net, &self.work, x, y, y_u8, <double *> sw,
                                       n, training, weight)
            elif not gradient:
                data_loss = _full_loss(&self.net, &self.work, x, y, y_u8, <float *> sw,
                                       n, training, weight)
            elif double:
                data_loss = _full_gradient(&self.net, &self.work, x, y, y_u8, <double *> sw,
                                           n, <double *> acc, &sl, weight)
            else:
                data_loss = _full_gradient(&self.net, &self.work, x, y, y_u8, <float *> sw,
                                           n, <float *> acc, &sl, weight)
        if gradient:
            self._slice_ended(&sl)
        return data_loss

    def finish_loss_gradient(self, double data_loss, double weight, double alpha,
                             double alpha_l1=0.0, bint gradient=True):
        """The loss from the sums `loss_gradient(..., finish=False)` returns
        (added over parts of the data), and with `gradient` the gradient
        finished in place from the sums in `grads` (the penalties' terms
        added, divided by `weight`): what `loss_gradient` gives over all
        the parts at once.

        Raises
        ------
        ValueError
            For negative penalties.
        RuntimeError
            If another thread is training with this engine.
        """
        self._idle()
        self._set_penalties(alpha, alpha_l1)
        if self.dtype == np.float64:
            return _objective(&self.net, data_loss, weight, gradient, <double *> NULL)
        return _objective(&self.net, data_loss, weight, gradient, <float *> NULL)

    def trace(self, X, Y, sample_weight, double alpha, double alpha_l1=0.0):
        """One training step's forward and backward pass over all rows (without
        the update), keeping every block.

        Parameters
        ----------
        X, Y, sample_weight : as in `run_epoch` (all rows form one batch).
        alpha, alpha_l1 : float
            L2 and L1 penalties.

        Returns
        -------
        loss : float
            As `loss_gradient`; the gradient is left in `grads`.
        z, a, delta : list of ndarray of shape (n_samples, n_l), l = 1..L
            Z^l = A^{l-1} W^l + b^l, A^l = f(Z^l) and delta^l = dC_i/dZ^l
            (rows times their sample weight), exactly as the engine computed
            them. Memory: 3 x n_samples x sum(n_l) values, so keep X small.
        """
        cdef Rows x
        cdef list keep = []
        cdef ptrdiff_t n = self._check_data(&x, X, Y, sample_weight, keep)
        units = self.layer_units
        cdef Work w
        blocks = self._allocate(n, &w, True)
        a, delta, z = blocks[:3]
        self._set_penalties(alpha, alpha_l1)
        Y = Y.astype(self.dtype, copy=False)  # byte targets: one block, converted
        cdef void *y = _data(Y)
        cdef void *sw = NULL if sample_weight is None else _data(sample_weight)
        cdef double loss
        if self.dtype == np.float64:
            with nogil:
                loss = _trace(&self.net, &x, <double *> y, <double *> sw, n, &w)
        else:
            with nogil:
                loss = _trace(&self.net, &x, <float *> y, <float *> sw, n, &w)
        starts = np.cumsum((0,) + units[1:]) * n
        views = [[block[starts[l]:starts[l + 1]].reshape(n, units[l + 1])
                  for l in range(len(units) - 1)] for block in (z, a, delta)]
        return (loss, *views)

    def predict(self, X, layer=None, check_finite=False):
        """Output activations for X, or the activations of a hidden layer.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_features), engine dtype
            Dense X must be C-contiguous and aligned; CSR X is read in place
            (never densified).
        layer : int, optional
            1 .. L - 1 for the hidden layer A^layer; None (or L) for the outputs.
        check_finite : bool, default=False
            Check X for inf and NaN, block by block, through Z^1 = X W^1
            (non-finite where X is; smaller than X and in cache, unlike X).

        Returns
        -------
        out : ndarray of shape (n_samples, n_layer), engine dtype, or None
            Softmax probabilities, logistic probabilities, identity or exp
            outputs, by the loss; or f(Z^layer) of that hidden layer. None
            if `check_finite` found inf or NaN in Z^1: in X, or (rarely) a
            product that overflowed.

        Notes
        -----
        Runs without the GIL in calls of SIGNAL_WORK multiply-adds,
        between which a pending Ctrl-C raises KeyboardInterrupt. Uses its
        own work memory, so concurrent calls are safe. One dense
        row of a network whose largest W^l takes `_plan.SHARED_ROW_BYTES` bytes
        takes the helper thread, when it is free and awake, for half of each
        layer's inputs (the same outputs to round-off).
        """
        cdef ptrdiff_t L = self.net.n_layers
        cdef ptrdiff_t at = L if layer is None else layer
        if not 1 <= at <= L:
            raise ValueError(f"layer must be in 1..{L}, got {layer}")
        cdef Rows x
        cdef ptrdiff_t n = _dense_rows(&x, X, self._typenum, self.net.units[0])
        cdef list keep
        if n == 0:  # not a plain dense block: check it all, or raise
            keep = []
            n = _set_rows(&x, X, self.dtype, self.net.units[0], keep)
        cdef ptrdiff_t width = _width(&self.net)
        cdef ptrdiff_t row_bytes = (self.net.units[0] + width) * self.dtype.itemsize
        cdef ptrdiff_t cap = min(n, max(PREDICT_MIN_ROWS, PREDICT_BYTES // row_bytes),
                                 max(PREDICT_MIN_ROWS, SIGNAL_WORK // self.net.n_params))
        cdef bint check = check_finite
        cdef cnp.npy_intp shape[2]
        shape[0], shape[1] = n, self.net.units[at]
        out = cnp.PyArray_EMPTY(2, shape, self._typenum, 0)
        # the blocks, then one row more: w.part, the helper's part of a shared row
        shape[0] = (cap + 1) * width
        work = cnp.PyArray_EMPTY(1, shape, self._typenum, 0)
        return out if self._predict_rows(&x, n, out, work, cap, at, check) else None

    cdef int _predict_rows(self, const Rows *x, ptrdiff_t n, out, work, ptrdiff_t cap,
                           ptrdiff_t at, bint check) except -1:
        """predict's nogil part (_predict), in calls of a few ms of work each
        (SIGNAL_WORK multiply-adds), between which a pending Ctrl-C
        raises KeyboardInterrupt (PyErr_CheckSignals); _predict's result."""
        cdef void *o = _data(out)
        cdef void *a = _data(work)
        cdef bint double = self._typenum == cnp.NPY_DOUBLE, finite = True
        cdef ptrdiff_t chunk = max(PREDICT_MIN_ROWS, SIGNAL_WORK // self.net.n_params)
        cdef ptrdiff_t start = 0, stop
        while finite and start < n:
            stop = min(n, start + chunk)
            with nogil:
                if double:
                    finite = _predict(&self.net, x, start, stop, <double *> o, <double *> a,
                                      cap, at, check)
                else:
                    finite = _predict(&self.net, x, start, stop, <float *> o, <float *> a,
                                      cap, at, check)
            start = stop
            if start < n:
                PyErr_CheckSignals()
        return finite

    def __reduce__(self):
        return (_restore, (self.layer_units, self.hidden_activation,
                           self.net.loss, self.dtype.str, self.params,
                           self.optimizer_settings(), self.net.slope,
                           self.net.huber_delta, self.batch_norm, self.dropout,
                           self.running, self.dropout_rng))


def _restore(layer_units, hidden_activation, loss, dtype, params, optimizer,
             negative_slope, huber_delta, batch_norm=False, dropout=0.0,
             running=None, dropout_rng=(0, 0)):
    engine = Engine(layer_units, hidden_activation, loss, dtype, negative_slope,
                    huber_delta, batch_norm, dropout)
    engine.params[...] = params
    if running is not None:
        engine.running[...] = running
    engine.dropout_rng = dropout_rng
    if optimizer is not None:
        engine.set_optimizer(**optimizer)
    return engine
