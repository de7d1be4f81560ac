"""The consuming side of ticketq, and the contract every part shares."""
