"""Demo job: 'prepare' a day of data. RUN_DATE and SAMPLE_ROWS come from the Airflow task's overrides."""

import json
import os
from pathlib import Path

run_date = os.environ["RUN_DATE"]
rows = int(os.environ.get("SAMPLE_ROWS", "100"))
out = Path(os.environ["DATA_DIR"]) / f"prepared-{run_date}.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"run_date": run_date, "rows": rows}))
print(f"OVERRIDE RUN_DATE={run_date}")
print(f"prepared {rows} rows into {out}")
