"""The comparison study behind ``edgeprune compare`` and ``edgeprune demo``."""
