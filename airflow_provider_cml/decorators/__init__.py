"""TaskFlow decorators: ``@task.cml`` (registered through ``get_provider_info()``)."""
