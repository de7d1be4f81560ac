"""StackOne's ticketing API: the HTTP client and the typed answers it returns."""
