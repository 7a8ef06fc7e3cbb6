"""platformc: compile one platform.yaml into everything a platform team deploys, per region."""

__version__ = "0.1.0"
