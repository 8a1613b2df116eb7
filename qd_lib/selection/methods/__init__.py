"""Built-in selectors; importing this package registers them.

One module per method. To add a method, write a module here with a function decorated by
:func:`qd_lib.selection.base.register` and import it below.
"""
from qd_lib.selection.methods import (
    contextual_diversity,  # noqa: F401
    herding,  # noqa: F401
    kcenter,  # noqa: F401
    moderate,  # noqa: F401
    pgcs,  # noqa: F401
    qdiverse,  # noqa: F401
    random,  # noqa: F401
)
