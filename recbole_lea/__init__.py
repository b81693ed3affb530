"""recbole_lea: LEA (Wang et al., SIGIR'24) and SNQN/SA2C (Xin et al., WSDM'22) as a RecBole plugin."""

__version__ = "0.1.0"

#: log line format of our messages (LE build, run summary), the same as RecBole's console lines
LOG_FORMAT = "%(asctime)-15s %(levelname)s  %(message)s"
LOG_DATEFMT = "%d %b %H:%M"

# RecBole is installed with `pip install --no-deps recbole==1.2.1` (README), not by pip's resolver:
# say so in one message rather than fail later on an import deep inside a run.
from recbole_lea.compat import require_recbole as _require_recbole  # noqa: E402

_require_recbole()
