"""Tables, figures and an HTML page from LANModel results folders (``tools/report.py``); nothing is recomputed."""
from .results import Run, check_comparable, load_runs, loss_label, method_label
from .tables import Table1, gains_table, table1

__all__ = ['Run', 'Table1', 'check_comparable', 'gains_table', 'load_runs', 'loss_label', 'method_label', 'table1']
