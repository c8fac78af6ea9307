"""The ``cache`` directive of the ``.`` server block: kubedns's one cache of forwarded answers.

CoreDNS can run a cache per server block, and caches cluster answers too; kubedns has one
cache, for forwarded answers only (cluster answers are live), so only the ``.`` block's
``cache`` sets anything and ``disable ... <cluster zone>`` needs nothing.
"""

from __future__ import annotations

from kubedns.config import CacheConfig
from kubedns.corefile import values
from kubedns.corefile.conversion import Block, Conversion, one
from kubedns.corefile.syntax import Directive

_DEFAULTS = CacheConfig()


class Cache:
    """Converts the ``cache`` directives; ``finish`` settles what depends on all of them."""

    def __init__(self, out: Conversion) -> None:
        self.out = out
        self.line: int | None = None
        """Line of the ``.`` block's cache, once seen."""
        self.caps: dict[str, int] = {}
        """``success`` and ``denial`` capacities."""
        self.disabled: list[tuple[str, list[str], int]] = []
        """``disable`` lines: kind, zones, line (checked once the cluster zone is known)."""

    def directive(self, directive: Directive, block: Block) -> None:
        if not block.is_root:
            self.out.note(
                (),
                f"cache (line {directive.line}) in the server block for "
                f"{block.label}: not converted, kubedns has one cache of forwarded "
                "answers, set by the cache of the `.` server block",
            )
            return
        if self.line is not None:
            raise ValueError(f"a second cache (the first is on line {self.line})")
        self.line = directive.line
        args = list(directive.args)
        if args and args[0].isdigit():
            ttl = values.whole(args.pop(0), low=1)
            self.out.set(("cache", "max_ttl"), ttl, f"cache {ttl} (line {directive.line})")
            self.out.set(("cache", "negative_max_ttl"), ttl)
        if any(values.zone(arg) for arg in args):
            self.out.note(
                ("cache",), f"cache zones {' '.join(args)}: kubedns caches every forwarded name"
            )
        self.out.options(
            directive,
            mapped={
                "success": lambda option: self._kind(option, "max_ttl"),
                "denial": lambda option: self._kind(option, "negative_max_ttl"),
                "serve_stale": self._serve_stale,
                "servfail": self._servfail,
                "disable": self._disable,
            },
            noted={
                "prefetch": "not converted, kubedns does not prefetch: a popular name is "
                "asked again when it expires"
            },
            refused={"keepttl": "kubedns ages the TTLs of cached answers"},
            note_at=("cache",),
        )

    def _kind(self, option: Directive, ttl_key: str) -> None:
        """``success|denial CAPACITY [TTL] [MINTTL]``."""
        if not 1 <= len(option.args) <= 3:
            raise ValueError("takes CAPACITY [TTL] [MINTTL]")
        self.caps[option.name] = values.whole(option.args[0])
        if len(option.args) > 1:
            self.out.set(
                ("cache", ttl_key),
                values.whole(option.args[1], low=1),
                f"cache {{ {option.name} ... }} (line {option.line})",
            )
        if len(option.args) > 2:
            minimum = values.whole(option.args[2])
            if option.name == "success":
                self.out.set(("cache", "min_ttl"), minimum)
            else:
                self.out.note(
                    ("cache", ttl_key),
                    f"denial MINTTL {minimum} not converted: "
                    "kubedns keeps negative answers for their SOA TTL, no minimum",
                )

    def _serve_stale(self, option: Directive) -> None:
        if len(option.args) > 2:
            raise ValueError("takes [DURATION] [immediate|verify]")
        age = values.seconds(option.args[0]) if option.args else 3600.0
        mode = option.args[1].lower() if len(option.args) > 1 else "immediate"
        if mode not in ("immediate", "verify"):
            raise ValueError(f"refresh mode {mode!r} is not immediate or verify")
        note = f"cache {{ serve_stale }} (line {option.line})"
        self.out.set(("cache", "serve_stale"), True, note)
        self.out.set(("cache", "stale_max_age"), int(age))
        if mode == "immediate":
            self.out.note(
                ("cache", "serve_stale"),
                "CoreDNS answered stale first and refreshed "
                "after (immediate); kubedns serves stale only when every upstream "
                "fails (as verify), with TTL cache.stale_answer_ttl",
            )

    def _servfail(self, option: Directive) -> None:
        duration = values.seconds(one(option))
        if duration > 300:
            raise ValueError("CoreDNS allows at most 5m")
        kept = min(int(duration), 5)
        self.out.set(("cache", "servfail_ttl"), kept, f"cache {{ servfail }} (line {option.line})")
        if duration > 5:
            self.out.note(("cache", "servfail_ttl"), "kubedns keeps SERVFAIL at most 5 s")

    def _disable(self, option: Directive) -> None:
        if not option.args or option.args[0] not in ("success", "denial"):
            raise ValueError("takes success|denial [ZONES...]")
        zones = [values.zone(arg) for arg in option.args[1:]] or [""]
        self.disabled.append((option.args[0], zones, option.line))

    def finish(self, *, has_root: bool, cluster: str | None) -> None:
        if has_root and self.line is None:
            self.out.set(
                ("cache", "size"),
                0,
                "no cache in the `.` server block: CoreDNS cached no forwarded answers",
            )
        self._size()
        self._min_ttl()
        for kind, zones, line in self.disabled:
            self._disable_finish(kind, zones, line, cluster=cluster)

    def _size(self) -> None:
        """kubedns has one capacity for each kind; CoreDNS one per kind."""
        if not self.caps:
            return
        note = "success/denial capacity: kubedns keeps this many each"
        if len(set(self.caps.values())) > 1:
            note += " (the larger of the two)"
        self.out.set(("cache", "size"), max(self.caps.values()), note)

    def _min_ttl(self) -> None:
        """``cache 3`` caps below kubedns's 5 s minimum, which kubedns would refuse."""
        minimum = self.out.settings.get(("cache", "min_ttl"), _DEFAULTS.min_ttl)
        maximum = self.out.settings.get(("cache", "max_ttl"), _DEFAULTS.max_ttl)
        if minimum > maximum:
            self.out.set(
                ("cache", "min_ttl"),
                maximum,
                f"lowered to max_ttl {maximum}: kubedns needs min_ttl <= max_ttl",
            )

    def _disable_finish(
        self, kind: str, zones: list[str], line: int, *, cluster: str | None
    ) -> None:
        label = f"cache disable {kind}"
        if cluster is not None and all(values.is_within(zone, cluster) for zone in zones):
            self.out.note(
                ("cache",),
                f"{label} {' '.join(zones)} (line {line}): nothing to "
                "set, kubedns never caches its cluster zone's answers",
            )
        else:
            self.out.refuse(
                line,
                label,
                "kubedns can only turn the whole cache off (cache.size 0), not one kind for "
                "some zones",
            )
