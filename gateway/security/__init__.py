"""Who may do what: keys and pseudonyms, operator credentials, (later) tokens, policy and audit."""
