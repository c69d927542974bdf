"""Fixtures shared by every test area (each area's fixtures live in its own module)."""

from tests.ha_agent_lab import agent_lab, agent_lab_base  # noqa: F401
from tests.ha_lab_fixtures import ha_lab  # noqa: F401
from tests.store_fixtures import mail_store, store_server  # noqa: F401
from tests.zk_fixtures import zk_client, zk_config, zk_ensemble, zk_session_ensemble  # noqa: F401
