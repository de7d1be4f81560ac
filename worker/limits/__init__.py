"""Limits shared by every worker: the rate per API key, the cap per linked account, the
pauses a 429 asks for, and the health of the key after a 401/403."""
