"""mailha: a fault-tolerant mail store with ZooKeeper-led HA failover."""

__version__ = "0.1.0"
