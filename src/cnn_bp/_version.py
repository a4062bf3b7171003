"""The version of cnn_bp (one place)."""

__version__ = "0.1.0"
