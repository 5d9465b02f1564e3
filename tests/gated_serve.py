"""``upstep serve`` whose worker waits while a gate file is missing (for tests/test_serve.py).

    python tests/gated_serve.py --port PORT GATE LIMITS_JSON MODEL_FOLDER

The load test removes the gate to hold the running job, fills the queue on purpose, and puts it
back to let every job through. Everything else is the real service and app.
"""
import argparse
import json
import os
import time

import uvicorn

from upstep.web import Limits, Service, create_app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("gate")
    p.add_argument("limits", type=json.loads)
    p.add_argument("model")
    args = p.parse_args()
    service = Service([args.model], device="cpu", limits=Limits(**args.limits))
    upscaler = service._upscaler

    def gated(name):  # the worker takes a job, decodes it, then waits here while the gate is shut
        while not os.path.exists(args.gate):
            time.sleep(0.01)
        return upscaler(name)

    service._upscaler = gated
    uvicorn.run(create_app(service), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
