"""Test job: sleep SLEEP seconds; on SIGTERM write a marker file and exit (proves a stop ends it)."""

import os
import signal
import sys
import time
from pathlib import Path


def on_term(signum, frame):
    marker = os.environ.get("STOP_MARKER")
    if marker:
        Path(marker).write_text("stopped")
    sys.exit(143)


signal.signal(signal.SIGTERM, on_term)
print("sleeping", flush=True)
time.sleep(float(os.environ.get("SLEEP", "30")))
print("woke up", flush=True)
