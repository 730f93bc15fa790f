"""genosynth: differentially private synthetic genotype cohorts."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("genosynth")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from genosynth.cohort import Cohort, make_samples, make_variants  # noqa: E402
from genosynth.errors import GenosynthError, InputError, PrivacyError  # noqa: E402

__all__ = [
    "Cohort",
    "make_samples",
    "make_variants",
    "GenosynthError",
    "InputError",
    "PrivacyError",
    "__version__",
]
