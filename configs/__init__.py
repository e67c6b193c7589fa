"""LightningCLI configs shipped with the package; `iclr17 configs` lists them."""
