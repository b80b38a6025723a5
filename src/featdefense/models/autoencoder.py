"""The paper's denoising autoencoder (its Figure 4), made precise in method.md.

The network works in [-1, 1]: its input is 2x - 1 and its output (tanh + 1) / 2, so it maps images in
[0, 1] to images in [0, 1] like everything else in the pipeline.
"""
from torch import nn


class Denoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=3, padding=1), nn.ReLU(),   # 16 x 10 x 10
            nn.MaxPool2d(2, stride=2),                             # 16 x 5 x 5
            nn.Conv2d(16, 8, 3, stride=2, padding=1), nn.ReLU(),   # 8 x 3 x 3
            nn.MaxPool2d(2, stride=1),                             # 8 x 2 x 2
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 16, 3, stride=2), nn.ReLU(),             # 16 x 5 x 5
            nn.ConvTranspose2d(16, 8, 5, stride=3, padding=1), nn.ReLU(),  # 8 x 15 x 15
            nn.ConvTranspose2d(8, 1, 2, stride=2, padding=1), nn.Tanh(),   # 1 x 28 x 28
        )

    def forward(self, x):
        return (self.decoder(self.encoder(2 * x - 1)) + 1) / 2
