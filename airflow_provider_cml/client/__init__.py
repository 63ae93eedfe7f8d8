"""The HTTP client: settings, sending (requests and aiohttp), retries, errors, create-once POSTs."""
