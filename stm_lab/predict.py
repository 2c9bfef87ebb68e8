"""``python -m stm_lab.predict``: run a trained model on your own inputs.

    python -m stm_lab.predict run=outputs/runs/<dir> --input "the film was a delight"
    python -m stm_lab.predict run=outputs/runs/<dir> --file inputs.jsonl     # or a text file, one input a line
    echo '{"x": [3, 1, 4, 0, 0, 9, 0, 0, 0]}' | python -m stm_lab.predict run=outputs/runs/<dir>

One JSON line out per input: the input, the prediction at each scored step (a text task's class
name; a token task's class) and the probabilities. Inputs are read as the task reads them: a
text task tokenises with the vocabulary stored in the checkpoint (unknown words become
``<unk>``; the training files are not needed); a token task takes a list of token ids, or
``{"x": [...], "mask": [...]}`` to choose the steps to predict at (default: every step, or the
last one for a task scored once per sequence). ``checkpoint=best|last|FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import torch

from stm_lab.api import LoadedRun, load_run
from stm_lab.errors import ConfigError, DataError


def predict(run: LoadedRun, inputs: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The model's answers for each input, one dict per input."""
    spec, task = run.task.spec, run.task
    for item in inputs:
        batch = {k: torch.from_numpy(v) for k, v in task.encode(item).items()}
        batch.setdefault("y", torch.where(batch["mask"], 0, -100))  # heads read targets' shape only
        with torch.no_grad():
            scored = run.model(batch)
        out: dict[str, Any] = {"input": item}
        if scored.tokens is not None:  # a generating head: the sequence it decoded
            out["output"] = task.decode_sequence(scored.tokens.numpy())
        elif spec.is_classification:
            probs = scored.preds.softmax(-1)
            labels = task.decode(probs.argmax(-1).numpy())
            out["prediction"] = labels[0] if spec.scored == "one" else labels
            names = task.decode(torch.arange(spec.output_size).numpy())
            rows = [{str(n): round(float(p), 6) for n, p in zip(names, row, strict=True)} for row in probs]
            out["probabilities"] = rows[0] if spec.scored == "one" else rows
        else:
            values = scored.preds.tolist()
            out["prediction"] = values[0] if spec.scored == "one" else values
        yield out


def read_inputs(args: argparse.Namespace, stdin: TextIO) -> list[Any]:
    if args.input is not None:
        return [_parse(args.input)]
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise DataError(f"{path}: no such file (--file)")
        lines = path.read_text().splitlines()
    else:
        lines = stdin.read().splitlines()
    inputs = [_parse(line) for line in lines if line.strip()]
    if not inputs:
        raise DataError(f"{args.file or 'standard input'}: no inputs")
    return inputs


def _parse(line: str) -> Any:
    """A JSON value (a list of ids, an object), or else plain text."""
    try:
        value = json.loads(line)
    except ValueError:
        return line
    return value if isinstance(value, list | dict) else line


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stm_lab.predict", description=__doc__.splitlines()[0])
    p.add_argument("settings", nargs="*", help="run=DIR (required), checkpoint=best|last|FILE")
    p.add_argument("--input", help="one input: a text, or JSON (a list of token ids, or an object)")
    p.add_argument("--file", help="a file of inputs, one a line (text or JSON lines)")
    args = p.parse_args(argv)
    settings = dict(s.split("=", 1) for s in args.settings if "=" in s)
    stdout = stdout or sys.stdout
    try:
        unknown = sorted(set(settings) - {"run", "checkpoint"}) + [s for s in args.settings if "=" not in s]
        if unknown:
            raise ConfigError(unknown[0], settings.get(unknown[0]), ["run", "checkpoint"])
        if "run" not in settings:
            raise ConfigError("run", None, "a trained run's folder", hint="required: run=outputs/runs/<dir>")
        run = load_run(settings["run"], settings.get("checkpoint", "best"))
        for answer in predict(run, read_inputs(args, stdin or sys.stdin)):
            stdout.write(json.dumps(answer) + "\n")
    except (ConfigError, DataError, ValueError) as e:
        print(f"stm_lab predict: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
