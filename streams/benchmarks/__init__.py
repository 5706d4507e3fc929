"""Published and offline protocol streams (digits, splits, MTIL, X-TAIL, NEVIS'22, synthetic),
registered by name in :data:`streams.STREAMS` and imported only when built."""
