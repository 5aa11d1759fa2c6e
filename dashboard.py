"""The dashboard's server: ``streamlit run dashboard.py`` serves app.py and its pages (an ``st.App``).

What every first page needs is imported here, while the server starts and before anyone connects: torch,
transformers, PEFT, pandas, plotly and the library (about 8 s on 2 cores). Served as ``streamlit run app.py``
instead, the first visitor's first page waits for those imports. The zoo itself opens with the first page, and
its backbone loads in the background once that page is drawn (``studio.warm_up``).
"""
import pandas  # noqa: F401
import peft  # noqa: F401  (reading an adapter config goes through PEFT: about 4 s of imports)
import plotly.express  # noqa: F401
import streamlit as st
import torch  # noqa: F401
from transformers import AutoModel, AutoTokenizer  # noqa: F401  (the text zoos' backbone classes)

import tara_core.evaluate  # noqa: F401
import tara_core.firstview  # noqa: F401
import tara_core.methods  # noqa: F401
import tara_core.preference  # noqa: F401
import tara_core.run  # noqa: F401

app = st.App("app.py")
