"""matplotlib access for the optional plots (History.plot, keras.utils.plot_model).

matplotlib is an optional dependency (``pip install 'cnnfast[plot]'``). Figures are made with
the object API on an Agg canvas, never through pyplot, so plotting works headless and leaves
no global figure state behind.
"""

from __future__ import annotations

from typing import Any


def require_matplotlib(what: str) -> Any:
    """The matplotlib.figure module, or an ImportError saying how to install it."""
    try:
        import matplotlib.figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"{what} needs matplotlib, an optional dependency of cnnfast: "
            f"pip install 'cnnfast[plot]' (or pip install matplotlib)"
        ) from err
    return matplotlib.figure


def new_figure(what: str, figsize: tuple[float, float], dpi: float = 100.0) -> Any:
    """A matplotlib Figure attached to an Agg canvas (savefig works without a display)."""
    figure_module = require_matplotlib(what)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_module.Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig
