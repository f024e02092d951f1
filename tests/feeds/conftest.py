"""The feed's pipeline tests run worker processes with the outbox tests' fixtures."""

from tests.outbox.conftest import (  # noqa: F401  (fixtures, found by pytest under these names)
    outbox_db,
    queue_prefix,
    rabbitmq,
    sample_tables,
    transport_name,
    workers,
)
