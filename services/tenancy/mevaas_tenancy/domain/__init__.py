"""Tenancy's pure rules: onboarding, plans by tier, API key format and validation."""
