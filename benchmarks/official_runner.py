"""Run one completion of the official RLM package (``pip install rlms==0.1.3``, import ``rlm``).

This script is executed by *the official package's* Python (a separate venv), never
by recursa's: ``benchmarks/vs_official.py`` starts it as a subprocess, the way a user
would run their own script::

    /work/official-venv/bin/python benchmarks/official_runner.py \\
        --base-url http://127.0.0.1:PORT/v1 --model NAME --context FILE --query "..."

It reads the context file as a user of that package would (``Path.read_text()``), hands
the text to ``RLM.completion(prompt, root_prompt=query)`` with the ``local``
environment and the ``openai`` backend pointed at the given OpenAI-compatible server,
and prints one JSON object: ``answer`` and ``execution_time`` (the package's own
timing). It imports nothing from recursa.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--context", required=True, help="a UTF-8 text file")
    parser.add_argument("--query", required=True)
    parser.add_argument("--max-iterations", type=int, default=30)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from rlm import RLM  # the official package

    text = Path(args.context).read_text(encoding="utf-8")
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": args.model, "base_url": args.base_url, "api_key": "bench"},
        environment="local",
        max_depth=1,
        max_iterations=args.max_iterations,
    )
    result = rlm.completion(text, root_prompt=args.query)
    del text
    json.dump(
        {
            "answer": str(result.response),
            "execution_time": result.execution_time,
            "runner_s": time.perf_counter() - started,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
