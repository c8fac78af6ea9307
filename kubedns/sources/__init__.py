"""Where cluster objects come from: a snapshot file or the API watch; both emit ``events``."""
