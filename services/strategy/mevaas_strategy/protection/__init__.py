"""Leverage protection: registered Aave V3 positions watched every block by the engine and
deleveraged below their trigger (docs/leverage-protection.md)."""
