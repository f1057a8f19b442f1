"""guim: General User & Item eMbeddings.

Learn one embedding per user and item of a shop from its behaviour logs, benchmark it on a
GLUE-like suite of downstream tasks, compress it and serve it.
"""

from guim.data.dataset import Dataset, Sequences, load_dataset
from guim.embed import GuimRun, load_run

__version__ = "0.1.0"

__all__ = ["Dataset", "GuimRun", "Sequences", "__version__", "load_dataset", "load_run"]
