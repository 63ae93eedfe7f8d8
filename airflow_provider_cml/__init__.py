"""Apache Airflow provider for Cloudera AI (formerly Cloudera Machine Learning and CDSW)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
