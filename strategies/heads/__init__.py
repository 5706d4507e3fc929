"""Runner strategies of the analytic heads on cached features: ``ranpac``, ``fecam``, ``rail``, ``klda``."""
