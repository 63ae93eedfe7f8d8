"""An application for the workbench: serves until stopped (CRASH=1 makes it exit at once)."""

import os
import sys
import time

if os.environ.get("CRASH") == "1":
    sys.exit("the dashboard could not open its data (CRASH=1)")
while True:
    time.sleep(0.5)
