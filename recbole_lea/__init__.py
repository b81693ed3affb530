"""recbole_lea: LEA (Wang et al., SIGIR'24) and SNQN/SA2C (Xin et al., WSDM'22) as a RecBole plugin."""

__version__ = "0.1.0"
