"""Corefile migration: read a CoreDNS Corefile and say what it means as kubedns settings.

``syntax`` reads the file into server blocks and directives (no meaning attached); ``values``
reads keys, zones, durations and numbers as CoreDNS does; ``convert`` walks the blocks and maps
each directive (``kubernetes``, ``forward`` and ``cache`` have their own modules) into a
``conversion.Conversion`` of settings, comments and problems; ``render`` writes it as a
commented YAML config, and ``cli`` is ``kubedns import-corefile``.
"""
