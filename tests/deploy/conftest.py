from tests.compat.fixtures import module_gateway, module_ledger

__all__ = ["module_gateway", "module_ledger"]
