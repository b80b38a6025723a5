"""unsecured: the target classifier alone (the paper's baseline row): no defence at all."""
from torch import nn

from . import Defence

DEFENCE = Defence(
    name="unsecured", label="unsecured", kind="preprocessor", build=lambda _, shape: nn.Identity(),
    paper_key="unsecured", order=0, description="the target alone")
