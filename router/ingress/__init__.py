"""Everything between the client's bytes and a validated request: errors, parsing, auth."""
