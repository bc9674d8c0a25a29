"""Where engines run: in this process (the default) or as actors on a Ray cluster."""
