"""hw5kit: the HW5 cloud image classifier, its deployment pipeline and its autograder."""

__version__ = "0.1.0"
