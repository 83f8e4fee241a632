"""Federated learning: server update rules (pure functions), the client's local loop, server state."""
