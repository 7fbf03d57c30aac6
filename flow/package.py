"""Deployment package (completed with the board flow)."""
