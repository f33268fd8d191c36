"""quoteguard."""
