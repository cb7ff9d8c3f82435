"""Command line: ``cnnfast summary MODEL`` (or ``python -m cnnfast summary MODEL``).

Prints the analyzer's table (cnnfast.analyze) for a zoo model or a saved model file, without
creating weights (a file's architecture is read from its header):

    cnnfast summary vgg16
    cnnfast summary my_model.cnnfast
    cnnfast summary vgg16 --input-shape 32,32,3 --classes 10 --fc-units 512 --markdown
    cnnfast summary alexnet_grouped --optimizer adam --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cnnfast import models
from cnnfast.analyzer import analyze


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,3), got {text!r}") from None
    if len(dims) != 3 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive sizes H,W,C, got {text!r}")
    return dims


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnfast", description="cnnfast command line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="shape/parameter/FLOP/memory analysis of a zoo model",
                       description="Analyse a model from its shapes alone (no weights are created).")
    s.add_argument("model", help=f"a saved model file or a zoo name: {', '.join(models.names())}")
    s.add_argument("--input-shape", type=_shape, metavar="H,W,C", help="input shape, e.g. 32,32,3")
    s.add_argument("--classes", type=int, help="number of output classes")
    s.add_argument("--fc-units", type=int, help="width of the VGG fully connected layers")
    s.add_argument("--optimizer", default=None,
                   help='optimizer whose state counts in the training memory ("adam", "sgd")')
    s.add_argument("--batch-size", type=int, default=1, help="batch size for the memory totals")
    s.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or os.path.exists(name) or \
        name.lower().endswith((".keras", ".h5", ".npz", ".json", ".cnnfast"))


def _model_from_file(path: str):
    """The architecture stored in a cnnfast model file, without reading its weights."""
    import json

    from cnnfast.saving import model_from_config, read_header

    header = read_header(path)
    try:
        config = json.loads(header.metadata["architecture"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: no readable architecture in the header ({err})") from None
    return model_from_config(config)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "summary":
        if _looks_like_path(args.model):
            if not os.path.exists(args.model):
                print(f"cnnfast summary: no such file {args.model!r}", file=sys.stderr)
                return 2
            try:
                report = analyze(_model_from_file(args.model), optimizer=args.optimizer,
                                 batch_size=args.batch_size)
            except (OSError, ValueError) as err:
                print(f"cnnfast summary: {err}", file=sys.stderr)
                return 2
            print(report.to_markdown() if args.markdown else report)
            return 0
        kwargs = {}
        if args.input_shape is not None:
            kwargs["input_shape"] = args.input_shape
        if args.classes is not None:
            kwargs["classes"] = args.classes
        if args.fc_units is not None:
            kwargs["fc_units"] = args.fc_units
        try:
            model = models.get(args.model, **kwargs)
            report = analyze(model, optimizer=args.optimizer, batch_size=args.batch_size)
        except TypeError as err:  # an option the chosen model does not take (fc_units)
            print(f"cnnfast summary: {args.model}: {err}", file=sys.stderr)
            return 2
        except ValueError as err:
            print(f"cnnfast summary: {err}", file=sys.stderr)
            return 2
        print(report.to_markdown() if args.markdown else report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
