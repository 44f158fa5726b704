"""One module per service kind; importing this package registers them all (drillkit.stack.kinds).

The dependency runs one way: these modules import drillkit.stack (the Stack's helpers, the kinds
protocol); nothing in drillkit/stack/ outside this package imports them.
"""

from drillkit.stack.services import (
    app,
    cache,
    compose,
    database,
    payments,
    proxy,
    statuspage,
    web,
)

__all__ = ["app", "cache", "compose", "database", "payments", "proxy", "statuspage", "web"]
