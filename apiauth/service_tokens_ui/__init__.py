"""Service tokens in the portal: an admin creates them, sees each once, and revokes them."""
