"""Built-in selectors; importing this package registers them.

One module per method. To add a method, write a module here with a function decorated by
:func:`qd_lib.selection.base.register` and import it below.
"""
from qd_lib.selection.methods import (
    qdiverse,  # noqa: F401
    random,  # noqa: F401
)
