"""The leaf under every service: how a mailha node is set up.

Typed cluster config, file paths, the services' command lines, the
unprivileged service user, private files and secrets, self-signed
certificates, the front ends' metrics. Imports no other mailha package.
"""
