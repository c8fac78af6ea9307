"""Corefile migration: read a CoreDNS Corefile and say what it means as kubedns settings.

``syntax`` reads the file into server blocks and directives (no meaning attached),
``convert`` maps directives onto config keys and names what has no equivalent, ``render``
writes the result as a commented YAML config, and ``cli`` is ``kubedns import-corefile``.
"""
