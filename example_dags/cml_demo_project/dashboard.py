"""Demo application: a dashboard that serves until it is stopped."""

import os
import time

print(f"dashboard for model {os.environ.get('MODEL_NAME', '?')} is up", flush=True)
while True:
    time.sleep(1)
