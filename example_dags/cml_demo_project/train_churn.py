"""Demo job: train the churn classifier and log its AUC to the experiment ``churn-training``.

The run is tagged with the Airflow run that asked for it (``AIRFLOW_RUN_ID``), so the DAG finds it.
``LABEL_NOISE`` (a run override) is the share of training labels that are wrong: noisier labels
give a worse model, which is how the demo makes a second training that the gate keeps out.
"""

import os
import random

from tracking import FAILED, Run

noise = float(os.environ.get("LABEL_NOISE", "0.1"))
run = Run("churn-training", {"airflow_run_id": os.environ.get("AIRFLOW_RUN_ID", "manual")})
print(f"OVERRIDE LABEL_NOISE={noise} experiment run {run.id}")
try:
    rng = random.Random(os.environ.get("RUN_DATE", "fixed"))
    # Customers who leave have short tenures; the model scores by tenure, trained labels are noisy.
    tenure = [rng.uniform(0, 60) for _ in range(400)]
    churned = [(t < 12) != (rng.random() < noise) for t in tenure]
    scores = [-t for t in tenure]
    pos = [s for s, c in zip(scores, churned, strict=True) if c]
    neg = [s for s, c in zip(scores, churned, strict=True) if not c]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    model = {"artifact_path": "model", "flavors": {"python_function": {"loader_module": "churn_model"}}}
    run.log({"auc": round(auc, 4)}, {"label_noise": str(noise)}, model)
    print(f"auc {auc:.4f}", flush=True)
except BaseException:
    run.end(FAILED)
    raise
run.end()
