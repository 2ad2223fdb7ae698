import sys
from pathlib import Path

# make tests/lme4_fixtures.py importable as a module
sys.path.insert(0, str(Path(__file__).resolve().parent))
