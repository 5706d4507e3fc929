"""What a run shows: report and terminal tables, figures, run comparison, dashboard loggers."""
