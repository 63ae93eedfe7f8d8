"""A model for the workbench's deployments: doubles ``x``. FAIL_LOAD=1 (or FAIL_ON_TRY=TRY) makes loading fail; SLOW_LOAD=s slow."""

import os
import time

if os.environ.get("FAIL_LOAD") == "1" or os.environ.get("FAIL_ON_TRY", "-") == os.environ.get("TRY"):
    raise RuntimeError("the model's weights are missing (FAIL_LOAD=1, or FAIL_ON_TRY is this TRY)")
time.sleep(float(os.environ.get("SLOW_LOAD", "0")))


def predict(args):
    return {"doubled": args["x"] * 2, "version": os.environ.get("MODEL_VERSION", "")}
