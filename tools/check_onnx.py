#!/usr/bin/env python3
"""Checks an ONNX file `contrast export --format onnx` wrote and runs it (docs/export.md, "ONNX").

    python tools/check_onnx.py model.onnx                         # checker, opset, inputs and outputs
    python tools/check_onnx.py model.onnx --inputs x.npy --compare-representation h.npy --compare-embedding z.npy

Runs onnx.checker.check_model(full_check=True) (which includes shape inference), then, with
--inputs (N x I float32 rows as contrast reads them, or already [N, C, H, W]), onnxruntime on
them; each --compare-* is a .npy from `contrast embed` (--what representation / embedding) that
the matching output must equal to --tolerance, relative to the expected array's largest
magnitude. Prints one JSON object; exits 1 when a difference is above the tolerance.
Needs the `onnx` and `onnxruntime` packages (launch/test.sh installs pinned versions into
.venv-verify).
"""
import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--inputs", help=".npy of float32 inputs (N x I rows, or the input's own shape)")
    parser.add_argument("--compare-representation", help=".npy the 'representation' output must equal")
    parser.add_argument("--compare-embedding", help=".npy the 'embedding' output must equal")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    arguments = parser.parse_args()

    model = onnx.load(arguments.model)
    onnx.checker.check_model(model, full_check=True)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    report = {
        "checker": "ok",
        "ir_version": model.ir_version,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {v.name: dims(v) for v in model.graph.input},
        "outputs": {v.name: dims(v) for v in model.graph.output},
        "operators": sorted({n.op_type for n in model.graph.node}),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    failed = False
    if arguments.inputs:
        session = onnxruntime.InferenceSession(arguments.model, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0]
        x = np.load(arguments.inputs).astype(np.float32)
        x = x.reshape([len(x)] + [int(d) for d in feed.shape[1:]])
        names = [o.name for o in session.get_outputs()]
        results = dict(zip(names, session.run(names, {feed.name: x})))
        report["batch"] = len(x)
        for name, expected_file in (("representation", arguments.compare_representation),
                                    ("embedding", arguments.compare_embedding)):
            if not expected_file:
                continue
            if name not in results:
                report[name] = f"no output {name!r} in the file"
                failed = True
                continue
            expected = np.load(expected_file).astype(np.float64)
            computed = results[name].astype(np.float64)
            if computed.shape != expected.shape:
                report[name] = f"shape {list(computed.shape)}, expected {list(expected.shape)}"
                failed = True
                continue
            difference = float(np.max(np.abs(computed - expected)) / max(np.max(np.abs(expected)), 1e-30))
            report[name] = difference
            failed = failed or not difference <= arguments.tolerance
    print(json.dumps(report))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
