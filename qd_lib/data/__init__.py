"""Dataset manifests, splits, budgets and image loading."""
from qd_lib.data.budget import coreset_size, resolve_budget

__all__ = ["coreset_size", "resolve_budget"]
