"""Demo job: 'score' one day's partition. PARTITION_DATE is an override; MODEL is the job's default."""

import os
import time

partition = os.environ["PARTITION_DATE"]
model = os.environ.get("MODEL", "baseline")
print(f"OVERRIDE PARTITION_DATE={partition} MODEL={model}")
time.sleep(0.3)
print(f"scored partition {partition} with {model}", flush=True)
