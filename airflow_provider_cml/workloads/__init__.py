"""One module per Cloudera AI domain: its workload kinds, refs, API paths, statuses and specs."""
