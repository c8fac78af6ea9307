"""The mutating admission webhook: resolv.conf and service variables, as the kubelet would.

Pure parts (``envvars``, ``dnsconfig``, ``mutate``, ``review``) know nothing of I/O; ``store``
holds the Services and ConfigMaps fed by a source; ``server`` speaks HTTPS; ``runner`` wires
them; ``cli`` is the command line; ``metrics`` declares the families only the webhook process
exports. Nothing here imports the DNS answer path.
"""
