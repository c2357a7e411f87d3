"""A target that fails on import, the way a missing checkpoint does."""

import torch.nn as nn

CONFIG = {"width": 32}
WIDTH = CONFIG["depth"]  # KeyError raised by the user's own line


class Net(nn.Module):
    pass
