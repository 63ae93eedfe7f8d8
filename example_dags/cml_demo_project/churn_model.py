"""Demo model: a churn probability from tenure. The workbench loads this file and calls ``predict``."""

import math
import os

STAGE = os.environ.get("MODEL_STAGE", "dev")


def predict(args):
    tenure = float(args.get("tenure_months", 12))
    return {"churn_probability": round(1 / (1 + math.exp(tenure / 6 - 1)), 4), "stage": STAGE}
