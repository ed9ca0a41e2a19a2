"""The Python SDK is tested from its source tree (sdk/python/src), against a real
gateway and the provider simulator; `test_python_package.py` installs it for real."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.compat.fixtures import module_gateway, module_ledger

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))

__all__ = ["module_gateway", "module_ledger"]
