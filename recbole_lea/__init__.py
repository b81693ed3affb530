"""recbole_lea: LEA (Wang et al., SIGIR'24) and SNQN/SA2C (Xin et al., WSDM'22) as a RecBole plugin."""

__version__ = "0.1.0"

#: log line format of the LE build's messages, wherever they are printed (LE CLI, main job, benchmarks)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# RecBole is installed with `pip install --no-deps recbole==1.2.1` (README), not by pip's resolver:
# say so in one message rather than fail later on an import deep inside a run.
from recbole_lea.compat import require_recbole as _require_recbole  # noqa: E402

_require_recbole()
