"""The registry (cnn_bp._registry) is the one list of activations, losses and
solvers: everything else that names them agrees with it, and a code the
compiled core has no case for is an error, never a silent no-op
(CONTRIBUTING.md's recipes rely on both)."""

import importlib.util
import inspect
import pathlib
import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

import cnn_bp
from cnn_bp import _checks, _engine
from cnn_bp import _hooks as hooks
from cnn_bp import _network as _mlp
from cnn_bp import _registry as registry
from cnn_bp.__main__ import _parse_args

ROOT = pathlib.Path(__file__).resolve().parents[1]
ESTIMATORS = [cnn_bp.MLPClassifier, cnn_bp.MLPRegressor]


def test_the_compiled_enums_are_the_registry_in_its_order():
    assert _checks.activation_codes() == {a.name: i for i, a in enumerate(registry.ACTIVATIONS)}
    assert _checks.loss_codes() == {loss.name: i for i, loss in enumerate(registry.LOSSES)}
    assert _checks.solver_codes() == {s.name: i for i, s in enumerate(registry.SOLVERS)}
    for name in registry.ACTIVATION_NAMES:
        needs_z = _checks.derivative_needs_z(registry.activation_code(name))
        assert needs_z == (name in registry.DERIVATIVE_FROM_Z), name


def test_every_hidden_activation_and_loss_has_its_kernel_cases():
    """Each registry entry reaches a case of the C switches: an engine is
    made (which runs every kernel on its codes) and a short fit trains."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:60] / 16, y[:60]
    for name in registry.HIDDEN_ACTIVATIONS:
        model = cnn_bp.MLPClassifier((5,), activation=name, max_iter=2, random_state=0)
        model.fit(X, y)
        assert np.isfinite(model.loss_)
    for loss in registry.LOSSES:
        engine = _engine.Engine([3, 4, 2], 0, registry.loss_code(loss.name), np.float64)
        assert engine.loss == registry.loss_code(loss.name)


def test_the_estimators_take_their_choices_from_the_registry():
    constraints = cnn_bp.MLPRegressor._parameter_constraints
    assert constraints["activation"][0].options == set(registry.HIDDEN_ACTIVATIONS)
    assert constraints["solver"][0].options == set(registry.SOLVER_CHOICES)
    assert constraints["loss"][0].options == {
        loss.name for loss in registry.LOSSES if loss.estimator == "regressor"}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_solver_hyperparameters_are_declared_once(estimator):
    """Signatures stay explicit (scikit-learn's get_params reads them): each
    hyperparameter of the registry is there with the registry's default,
    constrained by the registry's interval, and documented by its line."""
    signature = inspect.signature(estimator.__init__).parameters
    constraints = estimator._parameter_constraints
    for h in registry.HYPERPARAMETERS:
        assert signature[h.name].default == h.default, h.name
        assert signature[h.name].kind == inspect.Parameter.KEYWORD_ONLY, h.name
        (constraint,) = constraints[h.name]
        if h.interval == "boolean":
            assert constraint == "boolean"
        else:
            low, high, closed = h.interval
            assert (constraint.left, constraint.right, constraint.closed) == (low, high, closed)
        kind = "bool" if h.interval == "boolean" else "float"
        assert f"    {h.name} : {kind}, default={h.default!r}\n" in estimator.__doc__
        assert " ".join(h.doc.split()) in " ".join(estimator.__doc__.split())
    # and the engine's optimizer takes each, by the same name
    engine = _engine.Engine([3, 4, 2], 0, 0, np.float64)
    for solver in registry.SOLVERS:
        values = {h.name: getattr(estimator(), h.name) for h in registry.HYPERPARAMETERS}
        engine.set_optimizer(solver.name, 0.1, **values)
        settings = engine.optimizer_settings()
        assert {k: settings[k] for k in values} == values


def test_each_solver_uses_the_hyperparameters_it_declares():
    """Changing a hyperparameter a solver declares changes its steps;
    changing one it does not declare changes nothing."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:100] / 16, y[:100]
    altered = {"momentum": 0.5, "nesterovs_momentum": False, "beta_1": 0.5, "beta_2": 0.9,
               "epsilon": 1e-3, "weight_decay": 0.5, "rho": 0.5}
    assert set(altered) == set(registry.HYPERPARAMETER_NAMES)

    def fit(solver, **params):
        model = cnn_bp.MLPClassifier((6,), solver=solver, max_iter=3, random_state=0,
                                     learning_rate_init=0.01, **params)
        return np.concatenate([w.ravel() for w in model.fit(X, y).coefs_])

    for solver in registry.SOLVERS:
        base = fit(solver.name)
        for name, value in altered.items():
            changed = not np.array_equal(fit(solver.name, **{name: value}), base)
            assert changed == (name in solver.hyperparameters), (solver.name, name)


def test_the_command_line_offers_the_registry():
    for activation, solver in zip(registry.HIDDEN_ACTIVATIONS,
                                  registry.SOLVER_CHOICES * len(registry.HIDDEN_ACTIVATIONS)):
        args = _parse_args(["--activation", activation, "--solver", solver])
        assert (args.activation, args.solver) == (activation, solver)
    for solver in registry.SOLVER_CHOICES:
        assert _parse_args(["--solver", solver]).solver == solver
    for output_only in set(registry.ACTIVATION_NAMES) - set(registry.HIDDEN_ACTIVATIONS):
        with pytest.raises(SystemExit):
            _parse_args(["--activation", output_only])


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_docstrings_list_every_activation_and_solver(estimator):
    doc = " ".join(estimator.__doc__.split())
    for a in registry.ACTIVATIONS:
        assert (f"{a.name}: {' '.join(a.doc.split())}" in doc) == (not a.output), a.name
    for s in registry.SOLVERS:
        assert f"'{s.name}': {s.doc}" in doc, s.name


def test_unknown_codes_from_the_public_path_raise_and_leave_the_model(monkeypatch):
    """A name the registry maps to a code the compiled core has no case for
    (a registry entry whose C cases were forgotten) fails loudly in fit: the
    kernels' switch defaults return CNNBP_UNKNOWN_CODE (NaN for the loss),
    the engine raises ValueError, and the fitted model is unchanged."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:80] / 16, y[:80]
    model = cnn_bp.MLPClassifier((5,), max_iter=3, random_state=0).fit(X, y)
    before = [w.copy() for w in model.coefs_]

    monkeypatch.setattr(_mlp, "activation_code", lambda name: 99)
    with pytest.raises(ValueError, match="unknown hidden activation code 99"):
        model.fit(X, y)
    # an output-only activation has no derivative case: not a hidden one
    monkeypatch.setattr(_mlp, "activation_code",
                        lambda name: registry.activation_code("softmax"))
    with pytest.raises(ValueError, match="unknown hidden activation code"):
        model.fit(X, y)
    monkeypatch.undo()

    monkeypatch.setattr(_mlp, "loss_code", lambda name: 42)
    with pytest.raises(ValueError, match="unknown loss code 42"):
        model.fit(X, y)
    monkeypatch.undo()

    monkeypatch.setattr(_checks, "solver_code", lambda name: 7)
    with pytest.raises(ValueError, match="no update step for solver 'adam'"):
        model.fit(X, y)
    monkeypatch.undo()

    for a, b in zip(model.coefs_, before):
        np.testing.assert_array_equal(a, b)


def test_the_kernel_kinds_reject_unknown_codes_directly():
    z = np.zeros((1, 2))
    with pytest.raises(ValueError, match="unknown activation code"):
        hooks.py_bias_activation(z, np.zeros(2), registry.activation_code("exp") + 1)
    with pytest.raises(ValueError, match="unknown hidden activation code"):
        hooks.py_delta_derivative(np.zeros(2), np.zeros(2), np.ones(2),
                                    registry.activation_code("softmax"))
    with pytest.raises(ValueError, match="unknown loss code"):
        hooks.py_output_loss(z, np.zeros(2), z.copy(), None, z.copy(), len(registry.LOSSES))


def _generate_module():
    path = ROOT / "tools" / "generate.py"
    if not path.exists():
        pytest.skip("the source tree's tools/generate.py is not here")
    pytest.importorskip("Cython")
    spec = importlib.util.spec_from_file_location("_cnn_bp_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_c_kernel_is_declared_to_cython_once():
    """The kernels read off the CNNBP_DECLARE macros of csrc/kernels.h and
    csrc/parallel.h are exactly
    the functions the kernel files define for both dtypes (FN(name)), and
    the installed _kernels.pxd is what the templates make of them."""
    generate = _generate_module()
    kernels = generate.read_kernels()
    names = [k.name for k in kernels]
    assert len(names) == len(set(names))
    defined = set()
    for source in (ROOT / "csrc").glob("*.c"):
        text = source.read_text()
        defined |= set(re.findall(r"^(?!static)\w[\w ]*\bFN\((\w+)\)\(", text, re.M))
        defined |= set(re.findall(r"cnnbp_(\w+)_##S\(", text))
    assert set(names) == defined
    installed = pathlib.Path(_engine.__file__).with_name("_kernels.pxd")
    template = ROOT / "src" / "cnn_bp" / "_kernels.pxd.tp"
    if installed.exists():
        assert installed.read_text() == generate.render(template, generate.namespace())


def test_the_parallel_api_is_declared_to_cython_from_its_headers():
    """The functions and constants of csrc/parallel.h and csrc/thread_blas.h
    reach Cython from the headers (tools/generate.py's read_api), none of
    them also by hand in the template."""
    generate = _generate_module()
    prototypes, constants = generate.read_api()
    names = {re.search(r"(cnnbp_\w+)\(", line).group(1) for line in prototypes}
    assert {"cnnbp_plan_parts", "cnnbp_team_begin", "cnnbp_team_run", "cnnbp_helpers_acquire",
            "cnnbp_blas_enter", "cnnbp_lockstep_learn"} <= names
    assert {"CNNBP_MAX_HELPERS", "CNNBP_MIN_PART_ROWS", "CNNBP_ROW_SHARED"} <= set(constants)
    assert "cnnbp_start_thread" not in names  # pthread_t: not a type Cython is told of
    template = (ROOT / "src" / "cnn_bp" / "_kernels.pxd.tp").read_text()
    declarations = template.split("\ncdef inline", 1)[0]  # the wrappers may call them
    assert "cdef extern" in declarations
    for name in names | set(constants):
        assert not re.search(rf"\b{name}\b", declarations), name


def test_every_activation_and_solver_beyond_scikit_learn_names_its_source():
    for entry in registry.ACTIVATIONS + registry.SOLVERS:
        if not (entry.sklearn or getattr(entry, "output", False)):
            assert entry.source, entry.name


def test_the_docs_tables_come_from_the_registry():
    """docs/features.md lists cnn_bp's activations and solvers, and their
    sources, by MyST substitutions that docs/conf.py fills from the registry;
    its hand-written sources table names none of them."""
    features = ROOT / "docs" / "features.md"
    if not features.exists():
        pytest.skip("the source tree's docs are not here")
    text = features.read_text()
    for substitution in ("extra_activations", "extra_solvers", "registry_sources"):
        assert "{{ %s }}" % substitution in text
    named = {name.strip() for row in re.findall(r"^\| ([^|]+) \|", text, re.M)
             for name in row.split(",")}
    sourced = {e.name for e in registry.ACTIVATIONS + registry.LOSSES + registry.SOLVERS
               if e.source}
    assert not named & sourced
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert "_registry" in conf and "myst_substitutions" in conf


def test_no_source_file_is_over_1000_lines():
    """Each C file and each Cython module stays under 1,000 lines: the one
    place of a piece of logic is found in a file a reader can hold. (No
    module includes another file: a .pyx is the whole module.)"""
    package = ROOT / "src" / "cnn_bp"
    files = sorted(ROOT.glob("csrc/*.[ch]")) + sorted(package.glob("*.pyx"))
    files += sorted(package.glob("*.pxd"))
    lines = {f.name: len(f.read_text().splitlines()) for f in files}
    assert {"team.c", "pool.c", "_engine.pyx", "_plan.pyx", "_passes.pyx"} <= set(lines)
    assert not list(package.glob("*.pxi"))
    assert not any(re.search(r"^include ", f.read_text(), re.M) for f in files)
    assert {name: n for name, n in lines.items() if n > 1000} == {}


def test_only_the_plan_calls_the_parallel_layer():
    """Of the Cython modules, _plan.pyx alone calls parallel.h's functions
    (but the stateless ones of threads.c, which every extension links): the
    passes know no threads (a shared one-row prediction's split comes in
    Work.split, set by the plan), and the engine and its checks run
    everything threaded through the plan."""
    parse_api = _generate_module().parse_api
    prototypes, _ = parse_api((ROOT / "csrc" / "parallel.h").read_text())
    parallel = {re.search(r"(cnnbp_\w+)\(", line).group(1) for line in prototypes}
    assert {"cnnbp_team_run", "cnnbp_helpers_acquire", "cnnbp_split_inputs"} <= parallel
    stateless = {name for name in parallel
                 if f"{name}(" in (ROOT / "csrc" / "threads.c").read_text()}
    package = ROOT / "src" / "cnn_bp"
    for module in ("_passes", "_engine", "_checks"):
        text = (package / f"{module}.pyx").read_text()
        pxd = package / f"{module}.pxd"
        text += pxd.read_text() if pxd.exists() else ""
        called = {name for name in parallel if re.search(rf"\b{name}\(", text)}
        assert called <= stateless, module
    plan = (package / "_plan.pyx").read_text()
    assert "cnnbp_team_run(" in plan and "cnnbp_split_inputs" in plan


def test_the_nogil_modules_compile_with_c_semantics():
    """Every module of nogil code takes the same directives: C division (a
    zero divisor gives inf or nan, as C does, never a ZeroDivisionError that a
    noexcept function cannot raise) and no bounds or wrap-around checks."""
    package = ROOT / "src" / "cnn_bp"
    directives = {name: (package / name).read_text().splitlines()[0]
                  for name in ("_engine.pyx", "_passes.pyx", "_plan.pyx", "_checks.pyx")}
    assert len(set(directives.values())) == 1
    assert all(d in directives["_passes.pyx"]
               for d in ("cdivision=True", "boundscheck=False", "wraparound=False"))
