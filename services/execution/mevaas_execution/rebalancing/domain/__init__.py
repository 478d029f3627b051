"""Pure rules of rebalances: the state machine and the planner."""
