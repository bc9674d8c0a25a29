"""LangGraph: early starts of pure nodes inside LangGraph's own Pregel loop."""
