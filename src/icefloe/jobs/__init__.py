"""Jobs: run states, the dependency graph, the runner and the scheduler."""
