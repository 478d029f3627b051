"""MEVaaS strategy service: strategy definitions and versions, and the engine that turns market
updates into opportunities."""
