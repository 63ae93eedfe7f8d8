"""Defaults the operators and sensors show in their signatures, kept apart so DAG parsing stays light.

The modules that use them at run time (the waiting rule, the hook) import them from here too.
"""

from __future__ import annotations

#: How long a workload may stay in a status that says nothing about its progress (a job run's
#: ``ENGINE_UNKNOWN``, or a status the API never listed) before a wait gives up on it. Without a
#: bound, a run the platform lost track of is waited on forever.
DEFAULT_UNKNOWN_GRACE = 600.0

#: The connection id operators, sensors and the hook use unless told otherwise.
DEFAULT_CONN_ID = "cml_default"
