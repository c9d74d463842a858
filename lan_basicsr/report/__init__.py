"""Tables, figures and an HTML page from LANModel results folders (``tools/report.py``); nothing is recomputed.

``table1(results)`` builds the paper's Table 1 layout (:class:`Table1`: ``.markdown()``, ``.csv()``, ``.write(dir)``);
``build_report(results, out)`` writes everything (tables, Fig. 5, per-image gains, Fig. 4 / 6, ``index.html``).
"""
from .builder import build_report
from .results import Run, check_comparable, load_runs, loss_label, method_label
from .tables import Table1, gains_table, table1

__all__ = [
    'Run', 'Table1', 'build_report', 'check_comparable', 'gains_table', 'load_runs', 'loss_label', 'method_label',
    'table1'
]
