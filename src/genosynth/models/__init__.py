"""Neural networks of genosynth.

Each model lives in its own module and is imported from there, e.g.
``from genosynth.models.dit import DiT1D, dit_from_name`` (the latent denoiser) or
``from genosynth.models.vae import ...`` (the SNP autoencoder). This package file imports
nothing so that the modules stay independent of one another.
"""
