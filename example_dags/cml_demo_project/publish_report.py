"""Demo job: started by Cloudera AI itself when train-model succeeds (a dependent job)."""

import os

print(f"OVERRIDE CDSW_PROJECT={os.environ.get('CDSW_PROJECT')}")
print("report published")
