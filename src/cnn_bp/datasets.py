"""Real data for the main job and the examples.

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747): 70,000
grey-scale 28 x 28 images of clothing in 10 classes, as the four idx files
that Debian's ``dataset-fashion-mnist`` package installs.
"""

import gzip
import os

import numpy as np

#: Where ``apt-get install dataset-fashion-mnist`` puts the files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path):
    """Read one gzip-compressed idx file of unsigned bytes.

    The idx format (LeCun et al., the MNIST database) is a big-endian header,
    magic ``0x0000 08 D`` (type 8 = ubyte, D dimensions), D int32 sizes, then
    the values.

    Parameters
    ----------
    path : str or path-like
        A ``*.gz`` idx file.

    Returns
    -------
    array : ndarray of dtype uint8 and the shape the header gives

    Raises
    ------
    ValueError
        A bad magic number, or fewer values than the header announces.
    """
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data[4:header], dtype=">i4"))
    if len(shape) != ndim or len(data) - header != int(np.prod(shape)):
        raise ValueError(f"{path}: size does not match its header {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(data_dir=None, dtype=np.float32):
    """Load Fashion-MNIST, pixels scaled to [0, 1].

    Parameters
    ----------
    data_dir : str, default=None
        Folder holding the four ``*-idx?-ubyte.gz`` files; None means
        ``/usr/share/datasets/fashion-mnist``.
    dtype : numpy dtype, default=numpy.float32
        dtype of the returned images.

    Returns
    -------
    X_train : ndarray of shape (60000, 784)
    y_train : ndarray of shape (60000,), dtype uint8, labels 0..9
    X_test : ndarray of shape (10000, 784)
    y_test : ndarray of shape (10000,), dtype uint8

    Raises
    ------
    FileNotFoundError
        When a file is missing; the message names the Debian package.
    ValueError
        When a file is corrupt or images and labels disagree in number.
    """
    data_dir = FASHION_MNIST_DIR if data_dir is None else os.fspath(data_dir)
    out = []
    for split in ("train", "test"):
        paths = [os.path.join(data_dir, name) for name in _FILES[split]]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST file {missing[0]} not found. Install the data with "
                "`apt-get install dataset-fashion-mnist` (Debian), or pass "
                "--data-dir / data_dir=DIR pointing at a folder with the four "
                "*-ubyte.gz files."
            )
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{data_dir}: {split} images and labels do not match")
        X = images.reshape(len(images), -1).astype(dtype)
        X /= 255
        out += [X, labels]
    return tuple(out)
