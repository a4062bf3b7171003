"""An untrusted ``.npz`` archive, read with memory bounded by what it declares.

Layer: beside the model file (``_model_file.py``), which alone uses it;
the standard library and numpy only. ``numpy.load`` trusts an archive's
sizes and inflates an entry when it is asked for; a model file from
elsewhere is read here instead, and every size is checked before anything
is allocated:

1. the archive's entries: ``.npy`` files, each stored (as ``numpy.savez``
   writes them) or deflated at most ``MAX_RATIO`` to 1, none larger than the
   file; nothing is inflated to list them;
2. an entry's ``.npy`` header (at most ``MAX_NPY_HEADER`` bytes): a plain
   dtype of the kinds the caller allows (never objects), C order, the shape
   the caller expects, and exactly the entry's size in bytes;
3. its data, read as a stream that stops at that size.

So reading an entry allocates at most its declared size, which is at most
``MAX_RATIO`` times the bytes the file holds for it.
"""

import math
import os
import zipfile

import numpy as np
from numpy.lib import format as npy

MAX_RATIO = 100  # inflated / deflated size of an entry (numpy stores them: 1)
MAX_NPY_HEADER = 4096  # bytes of an entry's .npy header (numpy writes ~128)
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The archive is not one this module reads: the reason in words."""


class Archive:
    """The entries of a ``.npz`` file (a path or a binary file object,
    read from its current position), listed and checked, not yet read."""

    def __init__(self, file):
        self._zip = zipfile.ZipFile(file)
        size = _file_size(self._zip.fp)
        self.entries = {}
        for info in self._zip.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.entries:
                raise ArchiveError(f"unexpected or repeated entry {name!r}")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"entry {name!r} is encrypted")
            if info.compress_size > size:
                raise ArchiveError(f"entry {name!r} claims {info.compress_size} bytes of a "
                                   f"{size}-byte file")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise ArchiveError(f"stored entry {name!r} has two sizes")
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                if info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    raise ArchiveError(f"entry {name!r} would inflate {info.compress_size} "
                                       f"bytes to {info.file_size}: over {MAX_RATIO} to 1")
            else:
                raise ArchiveError(f"entry {name!r} has compression {info.compress_type}")
            self.entries[name[:-4]] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()

    def read(self, name, kinds, shape=None, max_bytes=None):
        """Entry `name` as an ndarray whose dtype kind is in `kinds` (e.g.
        "fiu"), of `shape` if given, of at most `max_bytes` if given; raises
        ArchiveError before allocating anything that breaks one of these."""
        info = self.entries[name]
        with self._zip.open(info) as stream:
            version = npy.read_magic(stream)
            if version == (1, 0):
                found, fortran, dtype = npy.read_array_header_1_0(
                    stream, max_header_size=MAX_NPY_HEADER)
            elif version == (2, 0):
                found, fortran, dtype = npy.read_array_header_2_0(
                    stream, max_header_size=MAX_NPY_HEADER)
            else:
                raise ArchiveError(f"entry {name!r}: .npy version {version}")
            if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None:
                raise ArchiveError(f"entry {name!r} has dtype {dtype}")
            if fortran or (shape is not None and tuple(found) != tuple(shape)):
                raise ArchiveError(f"entry {name!r} has shape {found}"
                                   f"{' in Fortran order' if fortran else ''}, not {shape}")
            nbytes = math.prod(found) * dtype.itemsize  # Python ints: no overflow
            if nbytes != info.file_size - stream.tell():
                raise ArchiveError(f"entry {name!r} declares {nbytes} bytes and holds "
                                   f"{info.file_size - stream.tell()}")
            if max_bytes is not None and nbytes > max_bytes:
                raise ArchiveError(f"entry {name!r} has {nbytes} bytes, over {max_bytes}")
            data = bytearray(nbytes)
            view, got = memoryview(data), 0
            while got < nbytes:
                n = stream.readinto(view[got:got + _CHUNK])
                if not n:
                    raise ArchiveError(f"entry {name!r} ends early")
                got += n
        return np.frombuffer(data, dtype=dtype).reshape(found)


def _file_size(fp):
    """Bytes of the (seekable) file, whatever its position."""
    try:
        return os.fstat(fp.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        position = fp.tell()
        size = fp.seek(0, os.SEEK_END)
        fp.seek(position)
        return size
