"""How far the train plan's conv+relu+max-pool head kernel moves the weights from the Python
walk, which runs each layer on its own: the measurement behind the tolerance in
tests/test_train_plan.py::test_plan_trains_bit_identically_to_the_python_walk.

    PYTHONPATH=. python dev/measure_head_fusion.py

For every model and optimizer of that test whose plan fuses the head, the same steps as the
test (two train_on_batch, a learning-rate change, two epochs of fit) in both walks; prints the
largest weight or optimizer-state difference relative to the largest entry, and the largest
relative difference of the losses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_train_plan as T

import cnnfast as cf
from cnnfast.optimizers.schedules import LearningRateSchedule


def main() -> None:
    for name, factory, shape, kind in T.MODELS:
        for opt in sorted(T.OPTIMIZERS):
            classes = factory().output_shape[-1]
            x, y = T.data(shape, classes, kind)
            weights = np.linspace(0.5, 2.0, len(x))

            def steps(model, x=x, y=y, weights=weights):
                # The losses (train_on_batch gives [loss, accuracy]).
                out = [np.atleast_1d(model.train_on_batch(x[:16], y[:16]))[0]]
                if not isinstance(model.optimizer._learning_rate, LearningRateSchedule):
                    model.optimizer.learning_rate *= 0.5
                out.append(np.atleast_1d(model.train_on_batch(x[8:], y[8:],
                                                              sample_weight=weights[8:]))[0])
                history = model.fit(x, y, batch_size=10, epochs=2, verbose=0, shuffle=True)
                return np.array(out + history.history["loss"])

            runs = {}
            for python in (False, True):
                cf.set_seed(3)
                model = T.trained(factory, shape, kind, opt, python, lambda m: None)
                runs[python] = (model, steps(model))
            (plan, plan_losses), (walk, walk_losses) = runs[False], runs[True]
            if not any("conv+relu+max-pool" in f for f in plan._train_plan.fusions):
                continue
            pairs = list(zip(plan.get_weights(), walk.get_weights())) + \
                list(zip(plan.optimizer.get_state(), walk.optimizer.get_state()))
            weight_diff = max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-30)
                              for a, b in pairs)
            loss_diff = float(np.max(np.abs(plan_losses - walk_losses) / np.abs(walk_losses)))
            print(f"{name:<18} {opt:<16} weights {weight_diff:.2e}   losses {loss_diff:.2e}")


if __name__ == "__main__":
    main()
