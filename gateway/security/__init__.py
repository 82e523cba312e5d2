"""Who may do what: keys and pseudonyms, tokens and callers, per-dataset policy and granularity, budgets, audit."""
