"""The fault tests use the routing tests' gateway factory and simulator control."""

from tests.routing.conftest import make_gateway, redis_available, sim  # noqa: F401
