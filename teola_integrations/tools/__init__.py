"""Teola's own tooling, apart from the user API: the demo and benchmark apps and corpus, the ``teola``
CLI (demo, bench, soak, scale, show, overhead) and the figures it draws."""
