"""The serving benchmark: the course's reference backend, ours, and the in-process limit, driven
by one bounded load generator in one run (``python -m hw5kit.bench run``, ``nox -s bench``)."""
