"""The LSTM predictors' network (imports torch: `pipetune.predictors.lstm` imports this module only when it
builds a network, so the predictors package loads without the [ml] extra)."""

from __future__ import annotations

import torch


class IPANet(torch.nn.Module):
    """LSTM(`hidden` units, ReLU on the cell output) -> Dense(1), over a (batch, 12) input."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(input_size=1, hidden_size=hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, 12)
        out, _ = self.lstm(x.unsqueeze(-1))
        # Keras' LSTM(activation="relu") applies ReLU to the cell output; the last step feeds Dense(1).
        return self.head(torch.relu(out[:, -1, :])).squeeze(-1)
