"""Administration: accounts and API keys, against a deployment or the local stack."""
