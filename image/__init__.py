"""Build scripts of the k3sreg container image (`make image`); not part of the k3sreg package."""
