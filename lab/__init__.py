"""The demo and test lab: a whole cluster on one host.

Network namespaces as nodes, a ZooKeeper ensemble on the bridge, partitions
with nftables, `mailha cluster up|down`. Used by the `cluster` command, chaos,
bench and the tests; nothing here runs on a production node (that is haagent/).
"""
