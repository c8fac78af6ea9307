"""The DNS message codec: the one place that reads and writes wire format.

``query`` parses a client's packet once into the value every later stage reads (zone, cache,
forwarder, metrics, logs). ``template`` holds a reply before it meets a query: records already
in wire form, encoded once (``encode``) or taken from an upstream's reply (``scan``).
``render`` decides the UDP size, truncation, rotation and EDNS of every reply, error replies
included. Sans-I/O throughout: bytes and values in, bytes out.
"""
