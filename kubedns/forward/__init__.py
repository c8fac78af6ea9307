"""Forwarding for names outside the cluster zone: upstream pools, stub domains, a cache.

The app builds one ``Forwarder`` and puts it last in the fixed chain (cluster zone, then
forward); see ``forwarder.py`` for the contract.
"""

from kubedns.dns.wire import WireError
from kubedns.forward.forwarder import Forwarder, SelfForwardError
from kubedns.forward.upstream import ForwardError

__all__ = ["ForwardError", "Forwarder", "SelfForwardError", "WireError"]
