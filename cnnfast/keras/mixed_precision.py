"""``keras.mixed_precision``: the float32 and mixed_bfloat16 policies (cnnfast.mixed_precision)."""

from cnnfast.mixed_precision import Policy, global_policy, set_global_policy

__all__ = ["Policy", "global_policy", "set_global_policy"]
