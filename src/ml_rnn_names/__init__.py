"""ml_rnn_names: is a character-level LSTM really better than a plain RNN at telling a surname's language?

The seed notebook's API lives in the submodules (``data``, ``processing``, ``model``, ``training``,
``evaluation``, ``utils``); the Optuna study service lives in ``ml_rnn_names.study``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ml-rnn-names")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
