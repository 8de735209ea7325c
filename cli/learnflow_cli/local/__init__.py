"""The local stack: in-process stand-ins for API Gateway, Stripe and friends."""
