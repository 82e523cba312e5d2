"""Pure translators, one module per source -> target pair (no I/O, no Flask, no database)."""
