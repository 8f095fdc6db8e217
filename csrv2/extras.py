"""Optional dependencies: which csrv2 extra installs a module, and the one-line error when it is missing.

    onnxruntime = require("onnxruntime", "backbone.runtime=onnx")   # the module, or MissingExtra:
    # "backbone.runtime=onnx needs onnxruntime, which is not installed: pip install 'csrv2[onnx]'"

The `csrv2` command prints a MissingExtra, and any ModuleNotFoundError of a module listed in EXTRAS, as one line
(`missing_extra`), never a traceback (`--debug` shows it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module → (the pip package that provides it, the csrv2 extra that installs it; pyproject.toml)
EXTRAS = {
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnx": ("onnx", "onnx"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "qdrant_client": ("qdrant-client", "qdrant"),
    "mteb": ("mteb", "mteb"),
    "pytrec_eval": ("pytrec-eval-terrier", "mteb"),
    "sentence_transformers": ("sentence-transformers", "extras"),
    "peft": ("peft", "extras"),
    "faiss": ("faiss-cpu", "extras"),
    "matplotlib": ("matplotlib", "extras"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message is one line naming the extra that installs it."""


def install_hint(module: str) -> str:
    """ "pip install 'csrv2[onnx]'" for a module of EXTRAS (its top-level name), else "pip install <module>"."""
    package, extra = EXTRAS.get(module.split(".")[0], (module.split(".")[0], None))
    return f"pip install 'csrv2[{extra}]'" if extra else f"pip install {package}"


def message(module: str, what: str | None = None) -> str:
    package = EXTRAS.get(module.split(".")[0], (module.split(".")[0], None))[0]
    needs = f"{what} needs {package}" if what else package
    return f"{needs}, which is not installed: {install_hint(module)}"


def require(module: str, what: str | None = None) -> ModuleType:
    """import `module`, or raise MissingExtra naming `what` needs it and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or not module.startswith(err.name):  # the module is there, one of its own imports is not
            raise
        raise MissingExtra(message(module, what)) from err


def missing_extra(err: BaseException) -> MissingExtra | None:
    """`err` as a one-line MissingExtra when it is one, or a ModuleNotFoundError of a module in EXTRAS; else None."""
    if isinstance(err, MissingExtra):
        return err
    if isinstance(err, ModuleNotFoundError) and err.name and err.name.split(".")[0] in EXTRAS:
        return MissingExtra(message(err.name))
    return None
