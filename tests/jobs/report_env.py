"""Test job: print what it saw as one JSON line, then exit with EXIT_CODE (default 0)."""

import json
import os
import sys

seen = {name: os.environ.get(name) for name in os.environ.get("REPORT_VARS", "").split(",") if name}
seen["JOB_ARGUMENTS"] = os.environ.get("JOB_ARGUMENTS")
seen["argv"] = sys.argv[1:]
print("SEEN " + json.dumps(seen), flush=True)
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
