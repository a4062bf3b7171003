"""Fuzzing cnn_bp.load with mutated model files (hypothesis).

Run by tests/test_model_file_fuzz.py in a subprocess under an address-space
limit (a crash or a hang there fails the test, not the test run):

    python tests/fuzz_model_files.py [N_EXAMPLES]

Each example takes a model file that cnn_bp.save wrote and mutates it: bit
flips, truncations, insertions, two entries swapped, huge and negative
shapes in the header or an entry's .npy header, object dtypes, deeply nested
headers, entries compressed into bombs. Then load, and for a file that
loads, predict. Prints one JSON line: the count of each outcome and the
most one load allocated (tracemalloc's peak over what was allocated before
it, numpy included), with the size of that file.
"""

import io
import json
import sys
import tracemalloc
import warnings
import zipfile
import zlib
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

import cnn_bp
from cnn_bp import ModelFileError


def _saved(model):
    return cnn_bp.save(model, io.BytesIO()).getvalue()


def _seeds():
    """Model files of several kinds, and the rows to predict with."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [
            cnn_bp.MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y),
            cnn_bp.MLPClassifier((6, 4), max_iter=3, random_state=0, early_stopping=True)
            .fit(X, np.where(y > 4, "big", "small")),
            cnn_bp.MLPClassifier((5,), max_iter=3, random_state=0)
            .fit(X, np.column_stack([y > 4, y % 2 == 0])),
            cnn_bp.MLPRegressor(hidden_layer_sizes=(7,), max_iter=3, batch_norm=True,
                                dropout=0.1, random_state=0).fit(X, y * 0.1),
            cnn_bp.MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), solver="lbfgs",
                                max_iter=5, random_state=0).fit(X.astype(np.float32), y),
        ]
    return [_saved(m) for m in models], X[:5]


def _entries(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def _zip(entries, compress=()):
    """An archive of (name, bytes) entries, those named in `compress` deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, payload in entries:
            method = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name), payload, compress_type=method)
    return out.getvalue()


def _header(entries):
    names = [n for n, _ in entries]
    raw = dict(entries)["__header__.npy"]
    blob = np.load(io.BytesIO(raw))
    return json.loads(blob.tobytes().decode()), names


def _with_header(entries, header):
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, blob)
    return [(n, buffer.getvalue() if n == "__header__.npy" else p) for n, p in entries]


def _npy(array, **header_changes):
    """An .npy entry, its header's fields changed as given (the data kept)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    if not header_changes:
        return raw
    length = int.from_bytes(raw[8:10], "little")
    fields = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": array.shape, **header_changes}
    text = repr(fields).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return raw[:8] + len(text).to_bytes(2, "little") + text + raw[10 + length:]


# compressed bombs: zeros that deflate about 1000 to 1 ({megabytes: (deflated, crc)})
_BOMB = {}


def _bomb(megabytes):
    if megabytes not in _BOMB:
        z, crc, zeros = zlib.compressobj(9, zlib.DEFLATED, -15), 0, bytes(1 << 20)
        parts = []
        for _ in range(megabytes):
            parts.append(z.compress(zeros))
            crc = zlib.crc32(zeros, crc)
        _BOMB[megabytes] = b"".join(parts + [z.flush()]), crc
    return _BOMB[megabytes]


def bomb_entry(data, name, megabytes):
    """`data` with an entry `name` (added, or in place of one) that
    inflates to `megabytes` MiB of zeros: a compressed bomb."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        kept = [(i.filename, z.read(i)) for i in z.infolist() if i.filename != name]
    payload, crc = _bomb(megabytes)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", allowZip64=True) as z:
        for entry, raw in kept:
            z.writestr(zipfile.ZipInfo(entry), raw)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size, info.compress_size, info.CRC = megabytes << 20, len(payload), crc
        # the deflated bytes as they are (zipfile would deflate the zeros itself)
        info.header_offset = z.fp.tell()
        z.fp.write(info.FileHeader(zip64=info.file_size > 0xFFFFFFFF))
        z.fp.write(payload)
        z.filelist.append(info)
        z.NameToInfo[name] = info
        z.start_dir = z.fp.tell()
    return out.getvalue()


def mutate(data, draw):
    """One mutation of the model file `data`, drawn."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "swap", "shape", "npy_shape",
                                 "units", "object", "nested", "bomb", "random_header"]))
    n = len(data)
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, n - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(out), kind
    if kind == "truncate":
        return data[: draw(st.integers(0, n - 1))], kind
    if kind == "insert":
        at = draw(st.integers(0, n))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:], kind
    entries = _entries(data)
    header, names = _header(entries)
    arrays = [k for k in header["arrays"]]
    if kind == "swap":
        i, j = draw(st.integers(0, len(entries) - 1)), draw(st.integers(0, len(entries) - 1))
        payloads = [p for _, p in entries]
        payloads[i], payloads[j] = payloads[j], payloads[i]
        return _zip([(names[k], payloads[k]) for k in range(len(entries))]), kind
    if kind == "shape":
        key = draw(st.sampled_from(arrays))
        shape = draw(st.lists(st.integers(-2**63, 2**63), min_size=0, max_size=3))
        header["arrays"][key]["shape"] = shape
        return _zip(_with_header(entries, header)), kind
    if kind == "npy_shape":
        key = draw(st.sampled_from(arrays))
        shape = tuple(draw(st.lists(st.integers(-2**40, 2**40), min_size=1, max_size=2)))
        array = np.load(io.BytesIO(dict(entries)[key + ".npy"]))
        return _zip([(nm, _npy(array, shape=shape) if nm == key + ".npy" else p)
                     for nm, p in entries]), kind
    if kind == "units":  # huge layers, checksums recomputed: a consistent lie
        units = np.array([1, draw(st.integers(1, 2**31)), 1], np.int64)
        header["arrays"]["layer_units"].update(shape=[3], sha256=_digest(units))
        swapped = [(nm, _npy(units) if nm == "layer_units.npy" else p) for nm, p in entries]
        return _zip(_with_header(swapped, header)), kind
    if kind == "object":
        key = draw(st.sampled_from(arrays))
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return _zip([(nm, buffer.getvalue() if nm == key + ".npy" else p)
                     for nm, p in entries]), kind
    if kind == "nested":
        depth = draw(st.integers(33, 200_000))
        header["fitted"]["loss_curve_"] = json.loads("[" * min(depth, 900) + "]" * min(depth, 900))
        blob = json.dumps(header)
        if depth > 900:  # deeper than json.dumps goes: splice the text
            deep = "[" * depth + "]" * depth
            blob = blob.replace('"params":', f'"deep": {deep}, "params":')
        payload = io.BytesIO()
        np.save(payload, np.frombuffer(blob.encode(), np.uint8))
        return _zip([(nm, payload.getvalue() if nm == "__header__.npy" else p)
                     for nm, p in entries]), kind
    if kind == "bomb":
        name = draw(st.sampled_from(["extra.npy", "params.npy", "__header__.npy"]))
        return bomb_entry(data, name, draw(st.sampled_from([8, 64, 256]))), kind
    # random_header: a header of any JSON, checksums untouched
    value = draw(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                              max_leaves=20))
    key = draw(st.sampled_from(sorted(header)))
    header[key] = value
    return _zip(_with_header(entries, header)), kind


def _digest(array):
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def run(n_examples):
    seeds, X = _seeds()
    outcomes, peak = Counter(), {"bytes": 0, "file_bytes": 0, "kind": None}

    @settings(max_examples=n_examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        seed = data.draw(st.sampled_from(seeds))
        mutated, kind = mutate(seed, data.draw)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            model = cnn_bp.load(io.BytesIO(mutated))
        except ModelFileError:
            outcome = "refused"
        except Exception as exc:  # anything else is a finding
            outcome = f"other {type(exc).__name__}: {str(exc)[:80]}"
        else:
            outcome = "loaded"
        used = tracemalloc.get_traced_memory()[1] - before  # what the load allocated
        if used > peak["bytes"]:
            peak.update(bytes=used, file_bytes=len(mutated), kind=kind)
        if outcome == "loaded":
            try:
                model.predict(X.astype(model.coefs_[0].dtype))
            except Exception as exc:
                outcome = f"loaded, predict fails {type(exc).__name__}: {str(exc)[:60]}"
        outcomes[outcome] += 1
        outcomes[f"kind {kind}"] += 1

    tracemalloc.start()
    one()
    return {"examples": n_examples, "outcomes": dict(outcomes), "peak": peak}


def _measured_load(data):
    """(outcome, peak bytes allocated) of loading `data`."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    try:
        cnn_bp.load(io.BytesIO(data))
        outcome = "loaded"
    except ModelFileError as exc:
        outcome = f"refused: {str(exc)[:120]}"
    except Exception as exc:
        outcome = f"other {type(exc).__name__}: {str(exc)[:80]}"
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return outcome, peak


def known_cases():
    """The two files that made a load take gigabytes: a 2 MiB file with an
    extra entry that inflates to 2 GiB, and a 4 KB file whose header
    declares layers of [1, 150000000, 1], its checksums recomputed."""
    X = np.linspace(0, 1, 20).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = _saved(cnn_bp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=2,
                                           random_state=0).fit(X, X.ravel()))
    bomb = bomb_entry(small, "extra.npy", 2048)
    entries = _entries(small)
    header, _ = _header(entries)
    units = np.array([1, 150_000_000, 1], np.int64)
    header["arrays"]["layer_units"].update(sha256=_digest(units))
    huge = _zip(_with_header([(n, _npy(units) if n == "layer_units.npy" else p)
                              for n, p in entries], header))
    report = {}
    for name, data in (("bomb", bomb), ("huge_layers", huge)):
        outcome, peak = _measured_load(data)
        report[name] = {"file_bytes": len(data), "peak_bytes": peak, "outcome": outcome}
    return report


if __name__ == "__main__":
    if sys.argv[1:] == ["--known-cases"]:
        print(json.dumps(known_cases()))
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)))
