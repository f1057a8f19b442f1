"""Import a script of benchmarks/ as a module, for the tests of its bookkeeping. (Its own
module name: a helper in tests/conftest.py would clash with tests/serve/conftest.py.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(script: str, name: str) -> ModuleType:
    """benchmarks/`script` imported as module `name`, with benchmarks/ on sys.path for the
    helpers it imports (guim_quality, ...)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
