"""The Python SDK is tested from its source tree (sdk/python/src, put on the path by
tests/compat/fixtures.py), against a real gateway and the simulator;
`test_packages.py` installs it for real."""

from tests.compat.fixtures import SDK_SRC, module_gateway, module_ledger

__all__ = ["SDK_SRC", "module_gateway", "module_ledger"]
