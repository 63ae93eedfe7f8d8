"""Demo job: 'train' on the prepared data. LEARNING_RATE is an override; EPOCHS is the job's own setting."""

import json
import os
import time
from pathlib import Path

run_date = os.environ["RUN_DATE"]
data = json.loads((Path(os.environ["DATA_DIR"]) / f"prepared-{run_date}.json").read_text())
rate = float(os.environ.get("LEARNING_RATE", "0.1"))
print(f"OVERRIDE LEARNING_RATE={rate}")
for epoch in range(int(os.environ.get("EPOCHS", "1"))):
    time.sleep(0.5)
    print(f"epoch {epoch}: loss {1.0 / (epoch + 1) * rate:.4f} on {data['rows']} rows", flush=True)
